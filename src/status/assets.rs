//! The page's script and style, compiled in and served from the admin listener itself
//! (`/status.js`, `/status.css`), so the page's Content-Security-Policy allows only `'self'`
//! and no inline script or style at all.

/// Refreshes the page from `/status` every 2 s.
pub const SCRIPT: &str = include_str!("status.js");
/// Colours for state (in rotation green, out red) and the layout of tables and charts.
pub const STYLE: &str = include_str!("status.css");

/// The page's policy: nothing but its own script, style and `/status`; no frames, forms,
/// plugins or base changes. Inline SVG needs no `img-src`; `data:` images are allowed for
/// browsers that render an SVG as one.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; \
     style-src 'self'; connect-src 'self'; img-src data:; base-uri 'none'; \
     form-action 'none'; frame-ancestors 'none'";
