//! What the gateway tells its operators: Prometheus metrics, the access log, the audit log, and
//! the line writer and field formatting they share, all off the request path; the pace of long
//! work (loading a million tokens) that progress reports share.

pub mod access_log;
pub mod audit;
pub mod line_writer;
pub mod log_fields;
pub mod metrics;
pub mod progress;
