//! What an integration's defaults create besides blueprints: scorecards (per blueprint) and
//! pages. Port keeps them by identifier and refuses a second one of the same identifier; the
//! simulator records them so a test can read what was created.

use std::collections::BTreeMap;

use serde_json::Value;

#[derive(Debug, Default)]
pub(crate) struct Presentation {
    /// (blueprint, identifier) → the scorecard as created.
    pub scorecards: BTreeMap<(String, String), Value>,
    /// identifier → the page as created.
    pub pages: BTreeMap<String, Value>,
}

impl Presentation {
    /// Records a scorecard of `blueprint`; `false` if one of that identifier exists already.
    pub(crate) fn add_scorecard(&mut self, blueprint: &str, identifier: &str, body: Value) -> bool {
        let key = (blueprint.to_string(), identifier.to_string());
        if self.scorecards.contains_key(&key) {
            return false;
        }
        self.scorecards.insert(key, body);
        true
    }

    /// Records a page; `false` if one of that identifier exists already.
    pub(crate) fn add_page(&mut self, identifier: &str, body: Value) -> bool {
        if self.pages.contains_key(identifier) {
            return false;
        }
        self.pages.insert(identifier.to_string(), body);
        true
    }
}
