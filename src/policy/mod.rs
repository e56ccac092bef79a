//! What a request may do, judged from its path: the path as a normalising hop reads it (and
//! whether it names the security APIs), and the accounts' local access rules.

pub mod access_rules;
pub mod path;
