//! The bearer-token check in front of every route.

use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

/// Passes the request on if it carries `Authorization: Bearer <token>`, else 401.
pub(crate) async fn require_token(State(token): State<String>, request: Request, next: Next) -> Response {
    let presented = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.strip_prefix("Bearer "));
    match presented {
        Some(presented) if same_secret(presented.as_bytes(), token.as_bytes()) => next.run(request).await,
        _ => unauthorized(),
    }
}

fn unauthorized() -> Response {
    let mut response =
        (StatusCode::UNAUTHORIZED, "a bearer token is required: Authorization: Bearer <token>\n").into_response();
    response.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    response
}

/// Compares without an early exit, so the time taken does not tell how many
/// leading bytes of a guess were right (the length still shows).
fn same_secret(presented: &[u8], token: &[u8]) -> bool {
    presented.len() == token.len() && presented.iter().zip(token).fold(0u8, |diff, (a, b)| diff | (a ^ b)) == 0
}

#[cfg(test)]
mod tests {
    use super::same_secret;

    #[test]
    fn secrets_compare_whole() {
        assert!(same_secret(b"s3cret", b"s3cret"));
        assert!(!same_secret(b"s3cres", b"s3cret"));
        assert!(!same_secret(b"s3cre", b"s3cret"));
        assert!(!same_secret(b"", b"s3cret"));
    }
}
