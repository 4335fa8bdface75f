//! The one way this workspace declares a typed id: [`typed_ids!`](crate::typed_ids) makes
//! string newtypes (Port's blueprint and entity identifiers in `port::ids`, Azure DevOps' project,
//! repository, … ids in ingest) so that a function taking two ids cannot be handed them the
//! wrong way round.
//!
//! An id is the text the API uses, kept as it came: it prints (`Display`; `Debug` as a quoted
//! string, as the bare `String` did in messages), serializes transparently as that string, and
//! reads as a `str` (`as_str`, `AsRef<str>`, `Deref`). It is made by naming its type
//! (`Id::new(…)`, `From<String>`, `From<&str>`, or `From<u64>` for numeric ids, which are their
//! decimal digits in URLs).

/// Declares string-backed id newtypes with their constructors, accessors and conversions (a
/// macro because each needs the same dozen trait impls on a distinct type). The crate using it
/// needs `serde` as a dependency.
#[macro_export]
macro_rules! typed_ids {
    ($($(#[$doc:meta])* $name:ident;)+) => {$(
        $(#[$doc])*
        #[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, ::serde::Serialize, ::serde::Deserialize)]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            pub fn new(id: impl Into<String>) -> Self {
                Self(id.into())
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl ::std::fmt::Debug for $name {
            fn fmt(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
                ::std::fmt::Debug::fmt(&self.0, f)
            }
        }

        impl ::std::fmt::Display for $name {
            fn fmt(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl ::std::ops::Deref for $name {
            type Target = str;

            fn deref(&self) -> &str {
                &self.0
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        impl From<String> for $name {
            fn from(id: String) -> Self {
                Self(id)
            }
        }

        impl From<$name> for String {
            fn from(id: $name) -> String {
                id.0
            }
        }

        impl From<&str> for $name {
            fn from(id: &str) -> Self {
                Self(id.to_string())
            }
        }

        impl From<u64> for $name {
            fn from(id: u64) -> Self {
                Self(id.to_string())
            }
        }
    )+};
}
