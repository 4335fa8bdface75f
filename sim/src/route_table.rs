//! A simulator's routes as one table of rows — a path template and the handlers answering
//! it — turned into an axum router. A row's path may name its variants in place: a part in
//! brackets is optional (`/{org}[/{project}]/_apis/…` is the organization-scoped and the
//! project-scoped route) and `(a|b)` are alternatives (`pull(r|R)equests`); every variant is a
//! route of its own, answered by the same handlers. Rows naming the same path (one a method)
//! make one route answering each row's method.

use axum::Router;
use axum::routing::MethodRouter;

/// The router serving every variant of every row's path.
pub(crate) fn route_table<S>(rows: Vec<(&'static str, MethodRouter<S>)>) -> Router<S>
where
    S: Clone + Send + Sync + 'static,
{
    rows.into_iter()
        .fold(Router::new(), |router, (path, handlers)| {
            variants(path)
                .iter()
                .fold(router, |router, path| router.route(path, handlers.clone()))
        })
}

/// The paths a row's template stands for, the first optional part and alternative expanded
/// (then the rest, recursively).
fn variants(template: &str) -> Vec<String> {
    if let Some((before, rest)) = template.split_once('[')
        && let Some((optional, after)) = rest.split_once(']')
    {
        return [
            format!("{before}{optional}{after}"),
            format!("{before}{after}"),
        ]
        .iter()
        .flat_map(|path| variants(path))
        .collect();
    }
    if let Some((before, rest)) = template.split_once('(')
        && let Some((choices, after)) = rest.split_once(')')
    {
        return choices
            .split('|')
            .flat_map(|choice| variants(&format!("{before}{choice}{after}")))
            .collect();
    }
    vec![template.to_string()]
}

#[cfg(test)]
mod tests {
    use axum::body::{Body, to_bytes};
    use axum::http::{Method, Request};
    use axum::routing::{get, post};
    use tower::ServiceExt;

    use super::{route_table, variants};

    #[tokio::test]
    async fn rows_of_one_path_answer_each_their_method() {
        let router: axum::Router = route_table(vec![
            ("/x", get(|| async { "got" })),
            ("/x", post(|| async { "posted" })),
        ]);
        for (method, answer) in [(Method::GET, "got"), (Method::POST, "posted")] {
            let request = Request::builder()
                .method(method)
                .uri("/x")
                .body(Body::empty())
                .expect("request");
            let response = router.clone().oneshot(request).await.expect("answer");
            let body = to_bytes(response.into_body(), 64).await.expect("body");
            assert_eq!(body, answer);
        }
    }

    #[test]
    fn a_template_stands_for_each_of_its_variants() {
        assert_eq!(variants("/v1/entities"), ["/v1/entities"]);
        assert_eq!(
            variants("/{org}[/{project}]/_apis/git/pull(r|R)equests/{id}"),
            [
                "/{org}/{project}/_apis/git/pullrequests/{id}",
                "/{org}/{project}/_apis/git/pullRequests/{id}",
                "/{org}/_apis/git/pullrequests/{id}",
                "/{org}/_apis/git/pullRequests/{id}",
            ]
        );
    }
}
