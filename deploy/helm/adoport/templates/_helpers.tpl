{{/* Names, labels and the pod template every workload of the chart shares. */}}

{{- define "adoport.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "adoport.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "adoport.selectorLabels" -}}
app.kubernetes.io/name: {{ include "adoport.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "adoport.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 }}
{{ include "adoport.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- range $key, $value := .Values.extraLabels }}
{{ $key }}: {{ $value | quote }}
{{- end }}
{{- end }}

{{/* Whether the three roles run apart, on a broker. */}}
{{- define "adoport.scaled" -}}
{{- if or .Values.broker.url .Values.broker.existingSecret.name }}true{{ end }}
{{- end }}

{{/* The roles' workloads: [all] alone, or ingest, transform, publish. */}}
{{- define "adoport.roles" -}}
{{- if include "adoport.scaled" . }}["ingest","transform","publish"]{{ else }}["all"]{{ end }}
{{- end }}

{{/* The component that takes webhooks: all, or ingest. */}}
{{- define "adoport.webhookComponent" -}}
{{- if include "adoport.scaled" . }}ingest{{ else }}all{{ end }}
{{- end }}

{{- define "adoport.configMapName" -}}
{{- printf "%s-config" (include "adoport.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "adoport.secretName" -}}
{{- if and .Values.secret.name (kindIs "string" .Values.secret.name) }}
{{- .Values.secret.name }}
{{- else }}
{{- printf "%s-secret" (include "adoport.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}

{{/* The Secrets every process reads its variables from (port-ocean's secret.create/name). */}}
{{- define "adoport.secretNames" -}}
{{- $names := list }}
{{- if kindIs "slice" .Values.secret.name }}
{{- $names = .Values.secret.name }}
{{- else if or .Values.secret.create .Values.secret.name }}
{{- $names = list (include "adoport.secretName" .) }}
{{- end }}
{{- toJson $names }}
{{- end }}

{{- define "adoport.certSecretName" -}}
{{- if .Values.selfSignedCertificate.secret.useExistingSecret }}
{{- required "selfSignedCertificate.secret.name is required with useExistingSecret" .Values.selfSignedCertificate.secret.name }}
{{- else }}
{{- printf "%s-cert" (include "adoport.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}

{{- define "adoport.serviceAccountName" -}}
{{- if .Values.podServiceAccount.name }}
{{- tpl .Values.podServiceAccount.name . }}
{{- else }}
{{- printf "%s-sa" (include "adoport.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}

{{- define "adoport.image" -}}
{{- $default := printf "adoport:%s" (.Values.integration.version | default .Chart.AppVersion) }}
{{- if .Values.imageRegistry }}
{{- printf "%s/%s" (trimSuffix "/" .Values.imageRegistry) (.Values.image | default $default) }}
{{- else }}
{{- .Values.image | default $default }}
{{- end }}
{{- end }}

{{/* Where the mounted certificate authority is read from (REQUESTS_CA_BUNDLE). */}}
{{- define "adoport.caPath" -}}
/usr/local/share/ca-certificates/cert.crt
{{- end }}

{{/*
The pod spec of one role. Arguments: dict "root" $ "role" ("all", "ingest", "transform" or
"publish") "restartPolicy" (for Jobs) "probes" (bool) "incremental" (bool: the incremental
CronJob's `all`, on its own ConfigMap, incrementalSync.resources and .extraConfig, no broker).
*/}}
{{- define "adoport.podSpec" -}}
{{- $root := .root }}
{{- $values := $root.Values }}
{{- $role := .role }}
{{- $incremental := .incremental | default false }}
{{- $extraConfig := dict }}
{{- if $incremental }}{{- $extraConfig = $values.incrementalSync.extraConfig | default dict }}{{- end }}
{{- $takesWebhooks := or (eq $role "all") (eq $role "ingest") }}
{{- $roleValues := dict }}
{{- if ne $role "all" }}{{- $roleValues = index $values $role }}{{- end }}
{{- if or $values.podServiceAccount.create $values.podServiceAccount.name }}
serviceAccountName: {{ include "adoport.serviceAccountName" $root }}
{{- end }}
automountServiceAccountToken: false
{{- with .restartPolicy }}
restartPolicy: {{ . }}
{{- end }}
# SIGTERM: stop taking work, finish what is in flight, close (bounded by 30 s in adoport).
terminationGracePeriodSeconds: {{ $values.terminationGracePeriodSeconds | default 45 }}
{{- with $values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
dnsPolicy: {{ $values.dnsPolicy | default "ClusterFirst" }}
{{- with $values.dnsConfig }}
dnsConfig:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with $values.podSecurityContext }}
securityContext:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with $values.extraInitContainers }}
initContainers:
  {{- tpl (toYaml .) $root | nindent 2 }}
{{- end }}
containers:
  - name: {{ $role }}
    image: {{ include "adoport.image" $root | quote }}
    imagePullPolicy: {{ $values.imagePullPolicy }}
    args: [{{ $role | quote }}]
    {{- with $values.containerSecurityContext }}
    securityContext:
      {{- toYaml . | nindent 6 }}
    {{- end }}
    resources:
      {{- if $incremental }}
      {{- toYaml ($values.incrementalSync.resources | default $values.resources) | nindent 6 }}
      {{- else }}
      {{- toYaml (($roleValues).resources | default $values.resources) | nindent 6 }}
      {{- end }}
    ports:
      {{- if $takesWebhooks }}
      - name: http
        containerPort: {{ $values.service.port }}
        protocol: TCP
      {{- end }}
      - name: health
        containerPort: {{ $values.health.port }}
        protocol: TCP
    {{- $onBroker := and (include "adoport.scaled" $root) (not $incremental) }}
    {{- if or $onBroker $values.selfSignedCertificate.enabled $values.liveEvents.baseUrl $values.extraEnv $extraConfig }}
    env:
      {{- if $onBroker }}
      - name: ADOPORT__BROKER__URL
        valueFrom:
          secretKeyRef:
            {{- if $values.broker.existingSecret.name }}
            name: {{ $values.broker.existingSecret.name }}
            key: {{ $values.broker.existingSecret.key | default "ADOPORT__BROKER__URL" }}
            {{- else }}
            name: {{ include "adoport.brokerSecretName" $root }}
            key: ADOPORT__BROKER__URL
            {{- end }}
      {{- end }}
      {{- if $values.selfSignedCertificate.enabled }}
      - name: REQUESTS_CA_BUNDLE
        value: {{ include "adoport.caPath" $root }}
      {{- end }}
      {{- if $values.liveEvents.baseUrl }}
      - name: OCEAN__BASE_URL
        value: {{ tpl $values.liveEvents.baseUrl $root | quote }}
      {{- end }}
      {{- with $values.extraEnv }}
      {{- tpl (toYaml .) $root | nindent 6 }}
      {{- end }}
      {{- range $key, $value := $extraConfig }}
      - name: {{ $key }}
        value: {{ $value | toString | quote }}
      {{- end }}
    {{- end }}
    envFrom:
      - configMapRef:
          name: {{ if $incremental }}{{ include "adoport.incrementalConfigMapName" $root }}{{ else }}{{ include "adoport.configMapName" $root }}{{ end }}
      {{- range (include "adoport.secretNames" $root | fromJsonArray) }}
      - secretRef:
          name: {{ . }}
      {{- end }}
    {{- if .probes }}
    {{- /*
    Liveness: the process is not stuck, on the health port, which answers from the first second
    (also while a process waits for Port at start-up). Readiness: the process can take work
    (the broker takes messages): where webhooks come in, on the webhook port (which opens once
    the roles run), as Port's chart probes it; elsewhere on the health port.
    */}}
    {{- if $values.livenessProbe.enabled }}
    livenessProbe:
      httpGet:
        path: {{ if $takesWebhooks }}{{ $values.livenessProbe.path | default "/healthz" }}{{ else }}/healthz{{ end }}
        port: {{ if $takesWebhooks }}{{ $values.livenessProbe.port | default "health" }}{{ else }}health{{ end }}
      initialDelaySeconds: {{ $values.livenessProbe.initialDelaySeconds | default 10 }}
      periodSeconds: {{ $values.livenessProbe.periodSeconds | default 10 }}
      timeoutSeconds: {{ $values.livenessProbe.timeoutSeconds | default 5 }}
      successThreshold: 1
      failureThreshold: {{ $values.livenessProbe.failureThreshold | default 3 }}
    {{- end }}
    {{- if $values.readinessProbe.enabled }}
    readinessProbe:
      httpGet:
        path: {{ if $takesWebhooks }}{{ $values.readinessProbe.path | default "/health/ready" }}{{ else }}/readyz{{ end }}
        port: {{ if $takesWebhooks }}{{ $values.readinessProbe.port | default "http" }}{{ else }}health{{ end }}
      initialDelaySeconds: {{ $values.readinessProbe.initialDelaySeconds | default 5 }}
      periodSeconds: {{ $values.readinessProbe.periodSeconds | default 5 }}
      timeoutSeconds: {{ $values.readinessProbe.timeoutSeconds | default 5 }}
      successThreshold: {{ $values.readinessProbe.successThreshold | default 1 }}
      failureThreshold: {{ $values.readinessProbe.failureThreshold | default 5 }}
    {{- end }}
    {{- end }}
    volumeMounts:
      # The root file system is read-only; temporary files go here.
      - name: tmp
        mountPath: /tmp
      {{- if $values.selfSignedCertificate.enabled }}
      - name: certificates
        mountPath: {{ include "adoport.caPath" $root }}
        subPath: cert.crt
        readOnly: true
      {{- end }}
      {{- with $values.extraVolumeMounts }}
      {{- tpl (toYaml .) $root | nindent 6 }}
      {{- end }}
volumes:
  - name: tmp
    emptyDir: {}
  {{- if $values.selfSignedCertificate.enabled }}
  - name: certificates
    secret:
      secretName: {{ include "adoport.certSecretName" $root }}
      items:
        - key: {{ if $values.selfSignedCertificate.secret.useExistingSecret }}{{ $values.selfSignedCertificate.secret.key | default "crt" }}{{ else }}crt{{ end }}
          path: cert.crt
  {{- end }}
  {{- with $values.extraVolumes }}
  {{- tpl (toYaml .) $root | nindent 2 }}
  {{- end }}
{{- with $values.nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with $values.affinity }}
affinity:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with $values.tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end }}

{{/*
The settings ConfigMap's data. Arguments: dict "root" $ "incremental" (bool). incremental: the
incremental CronJob's (port-ocean's configmap-incremental): a ONCE run with
OCEAN__INTEGRATION__INCREMENTAL_SYNC_ENABLED, incrementalSync.initializePortResources, no resync
schedule, no actions and no broker (one process, whatever the other workloads run on).
*/}}
{{- define "adoport.configData" -}}
{{- $incremental := .incremental }}
{{- $root := .root }}
{{- $values := $root.Values }}
{{- $eventListener := $values.integration.eventListener }}
{{- if or $incremental (eq $values.workload.kind "CronJob") }}
{{- $eventListener = dict "type" "ONCE" }}
{{- end }}
{{- $initialize := $values.initializePortResources }}
{{- if $incremental }}
{{- $initialize = $values.incrementalSync.initializePortResources | default false }}
{{- end }}
OCEAN__PORT__BASE_URL: {{ tpl $values.port.baseUrl $root | quote }}
OCEAN__INITIALIZE_PORT_RESOURCES: {{ $initialize | toString | quote }}
OCEAN__ALLOW_ENVIRONMENT_VARIABLES_JQ_ACCESS: {{ if hasKey $values "allowEnvironmentVariablesJqAccess" }}{{ $values.allowEnvironmentVariablesJqAccess | toString | quote }}{{ else }}"true"{{ end }}
{{- if and $values.scheduledResyncInterval (ne $values.workload.kind "CronJob") (not $incremental) }}
OCEAN__SCHEDULED_RESYNC_INTERVAL: {{ $values.scheduledResyncInterval | toString | quote }}
{{- end }}
{{- with $values.clientTimeout }}
OCEAN__CLIENT_TIMEOUT: {{ . | toString | quote }}
{{- end }}
OCEAN__SEND_RAW_DATA_EXAMPLES: {{ if hasKey $values "sendRawDataExamples" }}{{ $values.sendRawDataExamples | toString | quote }}{{ else }}"true"{{ end }}
OCEAN__EVENT_LISTENER: {{ $eventListener | toJson | quote }}
{{- with $values.integration.identifier }}
OCEAN__INTEGRATION__IDENTIFIER: {{ . | quote }}
{{- end }}
{{- if $incremental }}
OCEAN__INTEGRATION__INCREMENTAL_SYNC_ENABLED: "true"
{{- end }}
{{- range $key, $value := $values.integration.config }}
{{- if or (kindIs "map" $value) (kindIs "slice" $value) }}
OCEAN__INTEGRATION__CONFIG__{{ $key | snakecase | upper }}: {{ $value | toJson | quote }}
{{- else }}
OCEAN__INTEGRATION__CONFIG__{{ $key | snakecase | upper }}: {{ $value | toString | quote }}
{{- end }}
{{- end }}
{{- range $key, $value := $values.integration.extraConfig }}
{{ $key | snakecase | upper }}: {{ $value | toString | quote }}
{{- end }}
OCEAN__ACTIONS_PROCESSOR__ENABLED: {{ if $incremental }}"false"{{ else }}{{ $values.actionsProcessor.enabled | default false | toString | quote }}{{ end }}
ADOPORT__HEALTH__LISTEN: {{ printf "0.0.0.0:%v" $values.health.port | quote }}
ADOPORT__INGEST__LISTEN: {{ printf "0.0.0.0:%v" $values.service.port | quote }}
{{- if and (include "adoport.scaled" $root) (not $incremental) }}
ADOPORT__BROKER__PARTITIONS: {{ $values.broker.partitions | toString | quote }}
{{- with $values.broker.prefix }}
ADOPORT__BROKER__PREFIX: {{ . | quote }}
{{- end }}
{{- end }}
ADOPORT_LOG_JSON: {{ $values.logJson | toString | quote }}
{{- end }}

{{- define "adoport.incrementalConfigMapName" -}}
{{- printf "%s-incr-config" (include "adoport.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "adoport.brokerSecretName" -}}
{{- printf "%s-broker" (include "adoport.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}
