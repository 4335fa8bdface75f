//! Port's identifiers, typed. A blueprint's identifier and an entity's are both plain strings
//! on the wire (and serialise as such), but a function that takes both cannot be handed them
//! the wrong way round.

crate::typed_ids! {
    /// A blueprint's identifier (`azureDevopsRepository`).
    BlueprintId;
    /// An entity's identifier, unique within its blueprint.
    EntityId;
}

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
