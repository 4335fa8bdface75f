//! Pod Security Standards, "restricted" profile (kubernetes.io/docs/concepts/security/
//! pod-security-standards): the checks a namespace labelled
//! `pod-security.kubernetes.io/enforce: restricted` makes of a pod, for the pod templates of the
//! manifests and of the Helm chart's renders.

use serde_json::Value;

/// The pod template of a workload (Deployment, Job, CronJob), if it has one.
pub fn pod_spec(workload: &Value) -> Option<&Value> {
    let spec = &workload["spec"];
    [
        &spec["template"]["spec"],
        &spec["jobTemplate"]["spec"]["template"]["spec"],
    ]
    .into_iter()
    .find(|pod| pod.is_object())
}

/// What in `pod` the restricted profile refuses; empty when it admits the pod.
pub fn restricted_violations(pod: &Value) -> Vec<String> {
    let mut problems = Vec::new();
    let pod_context = &pod["securityContext"];
    let containers = ["initContainers", "containers"]
        .iter()
        .flat_map(|key| pod[*key].as_array().into_iter().flatten());
    for container in containers {
        let name = container["name"].as_str().unwrap_or("?");
        let context = &container["securityContext"];
        let either = |key: &str| {
            if context[key].is_null() {
                &pod_context[key]
            } else {
                &context[key]
            }
        };
        if either("runAsNonRoot") != true {
            problems.push(format!("{name}: runAsNonRoot is not true"));
        }
        if either("runAsUser") == 0 {
            problems.push(format!("{name}: runAsUser 0"));
        }
        let seccomp = &either("seccompProfile")["type"];
        if seccomp != "RuntimeDefault" && seccomp != "Localhost" {
            problems.push(format!("{name}: seccompProfile.type is {seccomp}"));
        }
        if context["allowPrivilegeEscalation"] != false {
            problems.push(format!("{name}: allowPrivilegeEscalation is not false"));
        }
        let drops = context["capabilities"]["drop"].as_array();
        if !drops.is_some_and(|d| d.iter().any(|c| c == "ALL")) {
            problems.push(format!("{name}: capabilities.drop lacks ALL"));
        }
        for added in context["capabilities"]["add"]
            .as_array()
            .into_iter()
            .flatten()
        {
            if added != "NET_BIND_SERVICE" {
                problems.push(format!("{name}: adds capability {added}"));
            }
        }
        if context["privileged"] == true {
            problems.push(format!("{name}: privileged"));
        }
    }
    for volume in pod["volumes"].as_array().into_iter().flatten() {
        if volume["hostPath"].is_object() {
            problems.push(format!("volume {}: hostPath", volume["name"]));
        }
    }
    problems
}
