//! Azure DevOps' error answers: the `{"$id","innerException","message","typeName","typeKey",
//! "errorCode","eventId"}` body, the 203 HTML sign-in page and the TF400733 rate-limit answer.

use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

/// One error answer of the simulated Azure DevOps.
#[derive(Debug)]
pub(crate) enum AdoError {
    /// Bad or missing PAT, caller asked for no redirect: 401 JSON.
    Unauthorized,
    /// Bad or missing PAT, browser-style: 203 with an HTML sign-in page.
    SignInPage,
    MissingApiVersion {
        method: String,
    },
    ApiVersionOutOfRange {
        version: String,
    },
    InvalidApiVersion {
        version: String,
    },
    BadArgument {
        message: String,
    },
    OrganizationNotFound {
        organization: String,
    },
    ProjectNotFound {
        project: String,
    },
    RepositoryNotFound {
        repository: String,
    },
    PullRequestNotFound,
    ItemNotFound {
        path: String,
        repository: String,
    },
    NoRoute,
    RateLimited {
        retry_after_secs: u64,
    },
    /// A scripted status without a body of its own.
    Scripted {
        status: StatusCode,
    },
    /// A refusal of one service's own: `type_name` is the exception's full .NET name
    /// (`Namespace.TypeKey, Assembly`), whose last dotted part is the `typeKey`.
    Service {
        status: StatusCode,
        message: String,
        type_name: String,
    },
}

impl AdoError {
    /// A [`AdoError::BadArgument`] refusal.
    pub(crate) fn bad_argument(message: impl Into<String>) -> Self {
        AdoError::BadArgument {
            message: message.into(),
        }
    }

    /// A [`AdoError::Service`] refusal.
    pub(crate) fn service(
        status: StatusCode,
        message: impl Into<String>,
        type_name: impl Into<String>,
    ) -> Self {
        AdoError::Service {
            status,
            message: message.into(),
            type_name: type_name.into(),
        }
    }
}

pub(crate) fn ado_json(
    status: StatusCode,
    message: &str,
    type_name: &str,
    type_key: &str,
    event_id: u32,
) -> Response {
    let body = json!({
        "$id": "1",
        "innerException": null,
        "message": message,
        "typeName": type_name,
        "typeKey": type_key,
        "errorCode": 0,
        "eventId": event_id,
    });
    (status, json_headers(), body.to_string()).into_response()
}

/// An Azure DevOps error body for the exception `type_name` (`Namespace.TypeKey, Assembly`).
pub(crate) fn ado_error(status: StatusCode, message: &str, type_name: &str) -> Response {
    let type_key = type_name
        .split(',')
        .next()
        .and_then(|full| full.rsplit('.').next())
        .unwrap_or(type_name);
    ado_json(status, message, type_name, type_key, 3000)
}

/// The content type Azure DevOps answers JSON with.
pub(crate) fn json_headers() -> HeaderMap {
    let mut headers = HeaderMap::new();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json; charset=utf-8; api-version=7.1"),
    );
    headers
}

const SIGN_IN_PAGE: &str = "<!DOCTYPE html>\n<html lang=\"en-US\">\n<head><title>Azure DevOps Services | Sign In</title>\n<meta http-equiv=\"X-UA-Compatible\" content=\"IE=11;&#32;IE=10;&#32;IE=9;&#32;IE=8\" />\n</head>\n<body>\n<div class=\"signin-container\"><h1>Sign in to Azure DevOps</h1>\n<p>You need to sign in to access this resource.</p>\n<a href=\"https://app.vssps.visualstudio.com/_signin\">Sign in</a></div>\n</body>\n</html>\n";

/// Reasonable default texts for a scripted status.
fn scripted(status: StatusCode) -> Response {
    let (type_key, message) = match status.as_u16() {
        400 => ("ArgumentException", "The request is not valid."),
        401 => (
            "UnauthorizedRequestException",
            "TF400813: The user '' is not authorized to access this resource.",
        ),
        403 => (
            "AccessCheckException",
            "TF401027: You need the Git 'GenericRead' permission to perform this action.",
        ),
        404 => ("NotFoundException", "The requested resource was not found."),
        409 => (
            "ConflictException",
            "The resource was modified by another request.",
        ),
        500 => (
            "VssServiceException",
            "TF246017: Azure DevOps Services could not process the request (simulated failure).",
        ),
        502 | 504 => (
            "VssServiceException",
            "The gateway did not get a timely answer (simulated failure).",
        ),
        503 => (
            "VssServiceUnavailableException",
            "TF400898: An Internal Error Occurred. Service unavailable (simulated failure).",
        ),
        _ => ("VssServiceException", "Simulated failure."),
    };
    let type_name = format!(
        "Microsoft.VisualStudio.Services.WebApi.{type_key}, Microsoft.VisualStudio.Services.WebApi"
    );
    ado_json(status, message, &type_name, type_key, 3000)
}

/// The rate-limit headers Azure DevOps sends when it delays or blocks a caller.
pub(crate) fn rate_limit_headers(headers: &mut HeaderMap, retry_after_secs: u64) {
    let reset = chrono::Utc::now().timestamp() + i64::try_from(retry_after_secs).unwrap_or(0);
    let pairs = [
        ("retry-after", retry_after_secs.to_string()),
        ("x-ratelimit-resource", "ATCPU".to_string()),
        ("x-ratelimit-delay", format!("{retry_after_secs}.000")),
        ("x-ratelimit-limit", "200".to_string()),
        ("x-ratelimit-remaining", "0".to_string()),
        ("x-ratelimit-reset", reset.to_string()),
    ];
    for (name, value) in pairs {
        if let Ok(value) = HeaderValue::from_str(&value) {
            headers.insert(name, value);
        }
    }
}

impl IntoResponse for AdoError {
    fn into_response(self) -> Response {
        match self {
            AdoError::Unauthorized => {
                let mut response = ado_json(
                    StatusCode::UNAUTHORIZED,
                    "TF400813: The user '' is not authorized to access this resource.",
                    "Microsoft.TeamFoundation.Framework.Server.UnauthorizedRequestException, Microsoft.TeamFoundation.Framework.Server",
                    "UnauthorizedRequestException",
                    3000,
                );
                response.headers_mut().insert(
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static("Basic realm=\"https://dev.azure.com/\""),
                );
                response
            }
            AdoError::SignInPage => (
                StatusCode::NON_AUTHORITATIVE_INFORMATION,
                [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
                SIGN_IN_PAGE,
            )
                .into_response(),
            AdoError::MissingApiVersion { method } => ado_json(
                StatusCode::BAD_REQUEST,
                &format!(
                    "No api-version was supplied for the \"{method}\" request. The version must be supplied either as part of the Accept header (e.g. \"application/json; api-version=1.0\") or as a query parameter (e.g. '?api-version=1.0')."
                ),
                "Microsoft.VisualStudio.Services.WebApi.VssVersionNotSpecifiedException, Microsoft.VisualStudio.Services.WebApi",
                "VssVersionNotSpecifiedException",
                3000,
            ),
            AdoError::ApiVersionOutOfRange { version } => ado_json(
                StatusCode::BAD_REQUEST,
                &format!(
                    "The requested REST API version of {version} is out of range for this server. The latest REST API version this server supports is 7.2."
                ),
                "Microsoft.VisualStudio.Services.WebApi.VssVersionOutOfRangeException, Microsoft.VisualStudio.Services.WebApi",
                "VssVersionOutOfRangeException",
                3000,
            ),
            AdoError::InvalidApiVersion { version } => ado_json(
                StatusCode::BAD_REQUEST,
                &format!("The version specified \"{version}\" is not a valid version string."),
                "Microsoft.VisualStudio.Services.WebApi.VssInvalidPreviewVersionException, Microsoft.VisualStudio.Services.WebApi",
                "VssInvalidPreviewVersionException",
                3000,
            ),
            AdoError::BadArgument { message } => ado_json(
                StatusCode::BAD_REQUEST,
                &message,
                "System.ArgumentException, mscorlib",
                "ArgumentException",
                0,
            ),
            AdoError::OrganizationNotFound { organization } => ado_json(
                StatusCode::NOT_FOUND,
                &format!("TF400813: The organization '{organization}' could not be found."),
                "Microsoft.VisualStudio.Services.Location.HostNotFoundException, Microsoft.VisualStudio.Services.WebApi",
                "HostNotFoundException",
                3000,
            ),
            AdoError::ProjectNotFound { project } => ado_json(
                StatusCode::NOT_FOUND,
                &format!(
                    "TF200016: The following project does not exist: {project}. Verify that the name of the project is correct and that the project exists on the specified Azure DevOps Server."
                ),
                "Microsoft.TeamFoundation.Core.WebApi.ProjectDoesNotExistWithNameException, Microsoft.TeamFoundation.Core.WebApi",
                "ProjectDoesNotExistWithNameException",
                3000,
            ),
            AdoError::RepositoryNotFound { repository } => ado_json(
                StatusCode::NOT_FOUND,
                &format!(
                    "TF401019: The Git repository with name or identifier {repository} does not exist or you do not have permissions for the operation you are attempting."
                ),
                "Microsoft.TeamFoundation.Git.Server.GitRepositoryNotFoundException, Microsoft.TeamFoundation.Git.Server",
                "GitRepositoryNotFoundException",
                3000,
            ),
            AdoError::PullRequestNotFound => ado_json(
                StatusCode::NOT_FOUND,
                "TF401180: The requested pull request was not found.",
                "Microsoft.TeamFoundation.Git.Server.GitPullRequestNotFoundException, Microsoft.TeamFoundation.Git.Server",
                "GitPullRequestNotFoundException",
                3000,
            ),
            AdoError::ItemNotFound { path, repository } => ado_json(
                StatusCode::NOT_FOUND,
                &format!(
                    "TF401174: The item '{path}' could not be found in the repository '{repository}' at the version specified by '<Branch: main >' (resolved to commit '0000000000000000000000000000000000000000')."
                ),
                "Microsoft.TeamFoundation.Git.Server.GitItemNotFoundException, Microsoft.TeamFoundation.Git.Server",
                "GitItemNotFoundException",
                3000,
            ),
            AdoError::NoRoute => ado_json(
                StatusCode::NOT_FOUND,
                "The controller for path was not found or does not implement IController.",
                "System.Web.HttpException, System.Web",
                "HttpException",
                0,
            ),
            AdoError::RateLimited { retry_after_secs } => {
                let mut response = ado_json(
                    StatusCode::TOO_MANY_REQUESTS,
                    "TF400733: The request has been canceled: Request was blocked due to exceeding usage of resource 'ATCPU' in namespace 'User'. For more information on why your request was blocked, see the topic \"Rate limits\" on the Microsoft Web site (https://go.microsoft.com/fwlink/?LinkId=823950).",
                    "Microsoft.TeamFoundation.Framework.Server.RequestBlockedException, Microsoft.TeamFoundation.Framework.Server",
                    "RequestBlockedException",
                    3000,
                );
                rate_limit_headers(response.headers_mut(), retry_after_secs);
                response
            }
            AdoError::Scripted { status } => scripted(status),
            AdoError::Service {
                status,
                message,
                type_name,
            } => ado_error(status, &message, &type_name),
        }
    }
}
