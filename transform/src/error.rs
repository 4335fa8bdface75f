//! The transform crate's errors: a mapping that cannot be used. (Problems with single items
//! are not errors: they are [`crate::mapping::ItemProblem`]s, counted and reported.)

use crate::jq::JqError;

/// Why a port-app-config could not be compiled. The running mapping (if any) stays in use.
#[derive(Debug, Clone, thiserror::Error)]
pub enum MappingError {
    /// A jq expression does not compile; `path` is e.g.
    /// `resources[2].port.entity.mappings.properties.state`.
    #[error(
        "{path}: jq expression `{}` does not compile: {message}",
        shortened(expression)
    )]
    Compile {
        path: String,
        expression: String,
        message: String,
    },
    /// Several expressions do not compile: every one is listed (a mapping is refused with all
    /// its errors, so that one round of fixes is enough).
    #[error("{} expressions do not compile:\n{}", .0.len(), list(.0))]
    Several(Vec<MappingError>),
    /// The thread that compiles mappings could not be started (the system refused its stack).
    #[error("the mapping cannot be compiled: no thread for the compiler ({0})")]
    NoCompiler(String),
}

/// An expression as quoted in a message: its first 200 characters.
pub(crate) fn shortened(expression: &str) -> std::borrow::Cow<'_, str> {
    match expression.char_indices().nth(200) {
        None => expression.into(),
        Some((end, _)) => format!("{}...", &expression[..end]).into(),
    }
}

fn list(errors: &[MappingError]) -> String {
    errors
        .iter()
        .map(|e| format!("  - {e}"))
        .collect::<Vec<_>>()
        .join("\n")
}

impl MappingError {
    /// One error per expression that does not compile.
    pub fn errors(&self) -> Vec<&MappingError> {
        match self {
            MappingError::Several(errors) => errors.iter().flat_map(|e| e.errors()).collect(),
            one => vec![one],
        }
    }

    /// `Ok` for none, the error itself for one, [`MappingError::Several`] for more.
    pub(crate) fn from_all(mut errors: Vec<MappingError>) -> Result<(), MappingError> {
        match errors.len() {
            0 => Ok(()),
            1 => Err(errors.remove(0)),
            _ => Err(MappingError::Several(errors)),
        }
    }

    pub(crate) fn from_jq(path: String, expression: &str, error: JqError) -> Self {
        let message = match error {
            JqError::Compile { message, .. } | JqError::Runtime { message } => message,
            JqError::Runaway(why) => why.to_string(),
        };
        MappingError::Compile {
            path,
            expression: expression.to_owned(),
            message,
        }
    }
}
