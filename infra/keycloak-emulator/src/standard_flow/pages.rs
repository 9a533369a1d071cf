//! The HTML pages of the standard flow: the error page, the login page, UPDATE_PASSWORD, info.

use axum::response::Response;

use crate::http::html;

pub(super) fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#39;")
}

pub(super) fn page(status: u16, title: &str, body: &str) -> Response {
    html(
        status,
        &format!(
            "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>{t}</title></head>\
             <body><h1 id=\"kc-page-title\">{t}</h1>{body}</body></html>",
            t = escape(title)
        ),
    )
}

/// `error.ftl`: "We are sorry..." and the message (contract §9.2).
pub fn error_page(status: u16, message: &str) -> Response {
    page(
        status,
        "We are sorry...",
        &format!(
            "<div id=\"kc-error-message\"><p class=\"instruction\">{}</p></div>",
            escape(message)
        ),
    )
}

pub(super) fn info_page(message: &str) -> Response {
    page(
        200,
        message,
        &format!(
            "<div id=\"kc-info-message\"><p class=\"instruction\">{}</p></div>",
            escape(message)
        ),
    )
}

/// What the login page shows besides its form.
pub(super) enum Complaint<'a> {
    None,
    /// A field error (`input-error-username` or `input-error-password`).
    Field(&'static str, &'a str),
    /// The page-level alert.
    Alert(&'a str),
}

pub(super) fn login_page(action: &str, username: &str, complaint: Complaint<'_>) -> Response {
    let field_error = |field: &str| {
        match complaint {
        Complaint::Field(f, text) if f == field => format!(
            "<span id=\"input-error-{field}\" class=\"kc-feedback-text\" aria-live=\"polite\">{}</span>",
            escape(text)
        ),
        _ => String::new(),
    }
    };
    let alert = match complaint {
        Complaint::Alert(text) => format!(
            "<div class=\"alert-error\"><span class=\"kc-feedback-text\">{}</span></div>",
            escape(text)
        ),
        _ => String::new(),
    };
    let body = format!(
        "{alert}<form id=\"kc-form-login\" onsubmit=\"login.disabled = true; return true;\" action=\"{action}\" method=\"post\" novalidate=\"novalidate\">\
         <label for=\"username\">Username or email</label>\
         <input id=\"username\" name=\"username\" value=\"{username}\" type=\"text\" autocomplete=\"username\" autofocus/>{ue}\
         <label for=\"password\">Password</label>\
         <input id=\"password\" name=\"password\" value=\"\" type=\"password\" autocomplete=\"current-password\"/>{pe}\
         <input type=\"hidden\" id=\"id-hidden-input\" name=\"credentialId\"/>\
         <button name=\"login\" id=\"kc-login\" type=\"submit\">Sign In</button></form>",
        action = escape(action),
        username = escape(username),
        ue = field_error("username"),
        pe = field_error("password"),
    );
    page(200, "Sign in to your account", &body)
}

pub(super) fn update_password_page(action: &str, error: Option<&str>) -> Response {
    let error = error
        .map(|e| {
            format!(
                "<span id=\"input-error-password\" class=\"kc-feedback-text\">{}</span>",
                escape(e)
            )
        })
        .unwrap_or_default();
    let body = format!(
        "<div class=\"alert-warning\"><span class=\"kc-feedback-text\">You need to change your password to activate your account.</span></div>\
         <form id=\"kc-passwd-update-form\" action=\"{action}\" method=\"post\">\
         <label for=\"password-new\">New Password</label>\
         <input type=\"password\" id=\"password-new\" name=\"password-new\" autocomplete=\"new-password\" autofocus/>{error}\
         <label for=\"password-confirm\">Confirm password</label>\
         <input type=\"password\" id=\"password-confirm\" name=\"password-confirm\" autocomplete=\"new-password\"/>\
         <input type=\"checkbox\" id=\"logout-sessions\" name=\"logout-sessions\" value=\"on\" checked/>\
         <label for=\"logout-sessions\">Sign out from other devices</label>\
         <button type=\"submit\" id=\"kc-submit\">Submit</button></form>",
        action = escape(action),
    );
    page(200, "Update password", &body)
}
