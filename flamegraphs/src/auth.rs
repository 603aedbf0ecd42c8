//! The bearer-token check in front of every route.

use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::Response;

/// axum middleware: passes the request on if it carries `Authorization:
/// Bearer <token>` (the scheme's name in any case; the token compared in
/// constant time), else answers 401 with `WWW-Authenticate: Bearer`. The
/// debug routes use it; it guards an application's own routes with the
/// same token, e.g. a `/metrics` that stands in for the debug one: made with
/// `any` and [`only_get`](crate::only_get) (see there why not `get`).
pub async fn require_token(State(token): State<String>, request: Request, next: Next) -> Response {
    let presented =
        request.headers().get(header::AUTHORIZATION).and_then(|value| value.to_str().ok()).and_then(bearer_credentials);
    match presented {
        Some(presented) if same_secret(presented.as_bytes(), token.as_bytes()) => next.run(request).await,
        _ => unauthorized(),
    }
}

fn unauthorized() -> Response {
    let mut response =
        crate::reply::error(StatusCode::UNAUTHORIZED, "a bearer token is required: Authorization: Bearer <token>");
    response.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    response
}

/// The credentials of an `Authorization: Bearer <token>` value. The scheme's
/// name is case-insensitive (RFC 9110, 11.1), so `bearer` passes too.
fn bearer_credentials(value: &str) -> Option<&str> {
    let (scheme, credentials) = value.split_once(' ')?;
    // One or more spaces after the scheme (RFC 9110, 11.4: `1*SP`).
    scheme.eq_ignore_ascii_case("bearer").then_some(credentials.trim_start_matches(' '))
}

/// Compares without an early exit, so the time taken does not tell how many
/// leading bytes of a guess were right (the length still shows).
fn same_secret(presented: &[u8], token: &[u8]) -> bool {
    presented.len() == token.len() && presented.iter().zip(token).fold(0u8, |diff, (a, b)| diff | (a ^ b)) == 0
}

#[cfg(test)]
mod tests {
    use super::{bearer_credentials, same_secret};

    #[test]
    fn the_scheme_is_case_insensitive_and_the_token_is_not() {
        assert_eq!(bearer_credentials("Bearer s3cret"), Some("s3cret"));
        assert_eq!(bearer_credentials("bearer s3cret"), Some("s3cret"));
        assert_eq!(bearer_credentials("BEARER S3cret"), Some("S3cret"));
        assert_eq!(bearer_credentials("Bearer   s3cret"), Some("s3cret"));
        assert_eq!(bearer_credentials("Basic s3cret"), None);
        assert_eq!(bearer_credentials("Bearers3cret"), None);
        assert_eq!(bearer_credentials("s3cret"), None);
    }

    #[test]
    fn secrets_compare_whole() {
        assert!(same_secret(b"s3cret", b"s3cret"));
        assert!(!same_secret(b"s3cres", b"s3cret"));
        assert!(!same_secret(b"s3cre", b"s3cret"));
        assert!(!same_secret(b"", b"s3cret"));
    }
}
