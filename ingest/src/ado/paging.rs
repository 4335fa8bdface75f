//! Continuation-token paging: one page of a listing ([`AdoClient::get_page`]) and the one loop
//! over all of a listing's pages ([`paginate`]).
//!
//! Azure DevOps answers a page with its items and, while more remain, a continuation token (the
//! `x-ms-continuationtoken` header, or the body for some APIs). The next page is asked with that
//! token; the listing ends on a page without one. A server that answers the token it was asked
//! with would loop forever, so such a page ends the listing too.
//!
//! A page's items are parsed ([`AdoClient::get_page`]) or kept as their JSON text
//! ([`AdoClient::get_raw_page`]): a listing kept as text until each item is used takes about a
//! fifth of the memory of its parsed items (every object an ordered map of its own).

use std::future::Future;

use futures_util::Stream;
use futures_util::stream::try_unfold;
use serde::Deserialize;
use serde_json::Value;
use serde_json::value::RawValue;

use super::{AdoClient, AdoError, values};

/// One page of a continuation-token listing: its items parsed, or each as its JSON text
/// (`Page<Box<RawValue>>`).
#[derive(Debug)]
pub struct Page<T = Value> {
    pub items: Vec<T>,
    pub continuation_token: Option<String>,
}

/// A listing's answer with its `value` array's items as their text (other fields skipped).
#[derive(Deserialize)]
struct RawListing {
    value: Vec<Box<RawValue>>,
}

/// The items of a listing's answer `text`, each as its JSON text.
pub(crate) fn raw_values(url: &str, text: &str) -> Result<Vec<Box<RawValue>>, AdoError> {
    serde_json::from_str::<RawListing>(text)
        .map(|listing| listing.value)
        .map_err(|e| AdoError::Decode {
            url: url.to_string(),
            detail: format!("expected an object with a \"value\" array: {e}"),
        })
}

/// The items of every page of a listing, in order, one stream item a page.
///
/// `fetch` is called with no token for the first page, then with each token the previous page
/// carried; the stream ends after a page without a token or with the token it was asked with,
/// and after the first error. Collect with `try_concat`, or walk with `try_next` to act on
/// each page as it comes.
pub fn paginate<T, F, Fut, E>(fetch: F) -> impl Stream<Item = Result<Vec<T>, E>>
where
    F: FnMut(Option<String>) -> Fut,
    Fut: Future<Output = Result<Page<T>, E>>,
{
    try_unfold(
        (fetch, Some(None::<String>)),
        |(mut fetch, next)| async move {
            let Some(token) = next else {
                return Ok(None);
            };
            let page = fetch(token.clone()).await?;
            let next = page
                .continuation_token
                .filter(|next| Some(next) != token.as_ref())
                .map(Some);
            Ok(Some((page.items, (fetch, next))))
        },
    )
}

impl AdoClient {
    /// One page of `GET url` with `query` and, after the first page, `continuationToken`: the
    /// `value` array and the token of the next page.
    pub(crate) async fn get_page(
        &self,
        url: &str,
        mut query: Vec<(&str, &str)>,
        continuation_token: Option<&str>,
    ) -> Result<Page, AdoError> {
        if let Some(token) = continuation_token {
            query.push(("continuationToken", token));
        }
        let response = self.get_json(url, &query).await?;
        Ok(Page {
            items: values(url, response.body)?,
            continuation_token: response.continuation_token,
        })
    }

    /// [`AdoClient::get_page`] with each item kept as its JSON text, parsed by the caller when
    /// it uses the item.
    pub(crate) async fn get_raw_page(
        &self,
        url: &str,
        mut query: Vec<(&str, &str)>,
        continuation_token: Option<&str>,
    ) -> Result<Page<Box<RawValue>>, AdoError> {
        if let Some(token) = continuation_token {
            query.push(("continuationToken", token));
        }
        let response = self.get_text(url, &query).await?;
        Ok(Page {
            items: raw_values(url, &response.text)?,
            continuation_token: response.continuation_token,
        })
    }
}

#[cfg(test)]
mod tests {
    use futures_util::TryStreamExt;
    use serde_json::json;

    use super::*;

    /// A listing whose pages answer the given tokens; records the tokens it was asked with.
    async fn walk(tokens: &[Option<&str>]) -> (Vec<Value>, Vec<Option<String>>) {
        let mut asked = Vec::new();
        let items = paginate(|token: Option<String>| {
            asked.push(token.clone());
            let index = asked.len() - 1;
            let next = tokens[index].map(String::from);
            async move {
                Ok::<_, AdoError>(Page {
                    items: vec![json!(index)],
                    continuation_token: next,
                })
            }
        })
        .try_concat()
        .await
        .expect("the pages");
        (items, asked)
    }

    #[tokio::test]
    async fn pages_are_asked_with_the_previous_token_until_none() {
        let (items, asked) = walk(&[Some("a"), Some("b"), None]).await;
        assert_eq!(items, vec![json!(0), json!(1), json!(2)]);
        assert_eq!(
            asked,
            vec![None, Some("a".to_string()), Some("b".to_string())]
        );
    }

    #[tokio::test]
    async fn a_repeated_token_ends_the_listing() {
        let (items, asked) = walk(&[Some("a"), Some("a"), Some("b")]).await;
        assert_eq!(items, vec![json!(0), json!(1)]);
        assert_eq!(asked, vec![None, Some("a".to_string())]);
    }

    #[test]
    fn a_raw_listing_keeps_each_item_as_its_text() {
        let items = raw_values(
            "u",
            r#"{"count": 2, "value": [{"id": 1, "a": [1, 2]}, "x"]}"#,
        )
        .expect("a listing");
        let texts: Vec<&str> = items.iter().map(|item| item.get()).collect();
        assert_eq!(texts, vec![r#"{"id": 1, "a": [1, 2]}"#, r#""x""#]);
        for refused in [r#"{"count": 0}"#, "[]", r#"{"value": {}}"#, ""] {
            assert!(
                matches!(raw_values("u", refused), Err(AdoError::Decode { .. })),
                "{refused}"
            );
        }
    }

    #[tokio::test]
    async fn an_error_ends_the_listing() {
        let mut calls = 0;
        let result = paginate(|_token: Option<String>| {
            calls += 1;
            async {
                Err::<Page, _>(AdoError::Decode {
                    url: "u".into(),
                    detail: "d".into(),
                })
            }
        })
        .try_concat()
        .await;
        assert!(result.is_err());
        assert_eq!(calls, 1);
    }
}
