//! Port's identifiers, typed. A blueprint's identifier and an entity's are both plain strings
//! on the wire (and serialise as such), but a function that takes both cannot be handed them
//! the wrong way round.

use std::fmt;
use std::ops::Deref;

use serde::{Deserialize, Serialize};

/// One identifier type: a string newtype that reads as a `str` and prints as itself.
macro_rules! string_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
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

        impl Deref for $name {
            type Target = str;

            fn deref(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

string_id!(
    /// A blueprint's identifier (`azureDevopsRepository`).
    BlueprintId
);

string_id!(
    /// An entity's identifier, unique within its blueprint.
    EntityId
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_travel_as_bare_strings() {
        let blueprint = BlueprintId::new("azureDevopsRepository");
        assert_eq!(
            serde_json::to_string(&blueprint).expect("serialise"),
            "\"azureDevopsRepository\""
        );
        let entity: EntityId = serde_json::from_str("\"r1\"").expect("deserialise");
        assert_eq!(entity.as_str(), "r1");
        assert_eq!(entity.to_string(), "r1");
    }
}
