//! The transform crate's errors: a mapping that cannot be used. (Problems with single items
//! are not errors: they are [`crate::mapping::ItemProblem`]s, counted and reported.)

use crate::jq::JqError;

/// Why a port-app-config could not be compiled. The running mapping (if any) stays in use.
#[derive(Debug, Clone, thiserror::Error)]
pub enum MappingError {
    /// A jq expression does not compile; `path` is e.g.
    /// `resources[2].port.entity.mappings.properties.state`.
    #[error("{path}: jq expression `{expression}` does not compile: {message}")]
    Compile {
        path: String,
        expression: String,
        message: String,
    },
}

impl MappingError {
    pub(crate) fn from_jq(path: String, expression: &str, error: JqError) -> Self {
        let message = match error {
            JqError::Compile { message, .. } | JqError::Runtime { message } => message,
        };
        MappingError::Compile {
            path,
            expression: expression.to_owned(),
            message,
        }
    }
}
