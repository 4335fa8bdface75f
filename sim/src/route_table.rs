//! A simulator's routes as one table of rows — a path template and the handlers answering
//! it — turned into an axum router. A row's path may name its variants in place: a part in
//! brackets is optional (`/{org}[/{project}]/_apis/…` is the organization-scoped and the
//! project-scoped route) and `(a|b)` are alternatives (`pull(r|R)equests`); every variant is a
//! route of its own, answered by the same handlers.

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
    use super::variants;

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
