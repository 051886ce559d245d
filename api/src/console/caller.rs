//! Who is looking at a console page: the principal its session cookie proves, and the
//! CSRF token its forms and htmx requests send back. A page without a valid session
//! sends the browser to the sign-in page (htmx requests get `HX-Redirect`, so a
//! fragment never swaps a sign-in page into the middle of another).

use actix_web::dev::Payload;
use actix_web::http::header::{self, HeaderValue};
use actix_web::http::StatusCode;
use actix_web::{web, FromRequest, HttpRequest, HttpResponse, ResponseError};
use futures_util::future::LocalBoxFuture;

use crate::console::layout;

use crate::http::auth::{
    console_session, Authenticator, CommandContext, Principal, Refusal, SessionRefusal,
};
use crate::http::problem::ApiError;
use crate::http::session::{self, Session};

/// The signed-in user of a console request.
#[derive(Debug, Clone)]
pub struct ConsoleCaller {
    /// The user, as the API's rules see them.
    pub principal: Principal,
    /// The CSRF token of the session.
    pub csrf: String,
    /// The session.
    pub session: Session,
    /// Who sends the commands of this request, with its request id: what the API's
    /// command handlers take.
    pub context: CommandContext,
}

/// Why a console request was not answered with its page.
#[derive(Debug, thiserror::Error)]
pub enum ConsoleError {
    /// No valid session: sign in (again).
    #[error("sign in first")]
    SignIn {
        /// Where to come back to.
        next: String,
        /// Whether htmx asked (it follows `HX-Redirect`, not a 303).
        htmx: bool,
    },
    /// What the API would have answered.
    #[error(transparent)]
    Api(#[from] ApiError),
}

impl From<deadpool_postgres::PoolError> for ConsoleError {
    fn from(e: deadpool_postgres::PoolError) -> Self {
        Self::Api(e.into())
    }
}

impl ResponseError for ConsoleError {
    fn status_code(&self) -> StatusCode {
        match self {
            Self::SignIn { .. } => StatusCode::SEE_OTHER,
            Self::Api(e) => e.status_code(),
        }
    }

    fn error_response(&self) -> HttpResponse {
        match self {
            Self::SignIn { next, htmx } => {
                let to = format!(
                    "/sign-in?next={}",
                    form_urlencoded::byte_serialize(next.as_bytes()).collect::<String>()
                );
                if *htmx {
                    HttpResponse::Unauthorized()
                        .insert_header(("HX-Redirect", to))
                        .finish()
                } else {
                    HttpResponse::SeeOther()
                        .insert_header((header::LOCATION, to))
                        .finish()
                }
            }
            Self::Api(e) => {
                let mut response = HttpResponse::build(e.status_code());
                response.insert_header((
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("text/html; charset=utf-8"),
                ));
                response.body(layout::error_page(e).into_string())
            }
        }
    }
}

impl FromRequest for ConsoleCaller {
    type Error = ConsoleError;
    type Future = LocalBoxFuture<'static, Result<Self, ConsoleError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let req = req.clone();
        Box::pin(async move {
            let htmx = req.headers().contains_key("HX-Request");
            // An htmx request asks for a fragment: come back to the page it was made from.
            let page = htmx
                .then(|| req.headers().get("HX-Current-URL"))
                .flatten()
                .and_then(|v| v.to_str().ok())
                .and_then(|url| url.parse::<actix_web::http::Uri>().ok())
                .and_then(|uri| uri.path_and_query().map(|p| p.as_str().to_owned()));
            let sign_in = || ConsoleError::SignIn {
                next: page.clone().unwrap_or_else(|| {
                    req.uri()
                        .path_and_query()
                        .map_or("/", |p| p.as_str())
                        .to_owned()
                }),
                htmx,
            };
            let auth = req
                .app_data::<web::Data<Authenticator>>()
                .cloned()
                .ok_or_else(|| ApiError::internal("the app has no authenticator"))?;
            let cookie = req.cookie(session::COOKIE).ok_or_else(sign_in)?;
            let (principal, session) = match console_session(&auth, &req, cookie.value()).await {
                Ok(found) => found,
                Err(SessionRefusal::Credential(Refusal::Denied(_))) => return Err(sign_in()),
                Err(SessionRefusal::Credential(Refusal::Unavailable(e))) => return Err(e.into()),
                Err(SessionRefusal::Forbidden(reason)) => {
                    return Err(ApiError::Forbidden(reason.into()).into())
                }
            };
            Ok(Self {
                csrf: session.csrf_token(auth.keys()),
                context: CommandContext::of(&req, &principal),
                principal,
                session,
            })
        })
    }
}
