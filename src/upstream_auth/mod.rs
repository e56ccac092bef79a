//! What a forwarded request carries to the cluster in `Authorization`, and whether the gateway
//! lets it go at all.
//!
//! A service token is forwarded with its account's credential, so the cluster enforces what the
//! account may do: an API key the gateway creates for it (`auto`, see [`api_keys`]), one the
//! configuration gives it, nothing (a cluster without security), or, only where the
//! configuration says so, the gateway's own credential. The account's local access rules are
//! checked first. Users of the file realm are forwarded with the gateway's credential; a scheme
//! in `security.pass_through` goes with the client's own.

pub mod api_keys;

use std::sync::Arc;

use http::{HeaderValue, Method};

use crate::accounts::Accounts;
use crate::config::{AccountCredential, Config};
use crate::identity::{AccountId, TokenIdentity};
use crate::policy::access_rules::AccessRules;
use crate::proxy::headers::Authorization;
use api_keys::{ApiKeys, KeySlot, OpenKeysError};

/// Per account: its credential and its local rules.
struct Policy {
    credential: Credential,
    access: Option<AccessRules>,
}

enum Credential {
    /// Configured for the account.
    Own(HeaderValue),
    /// The gateway's own, by explicit configuration.
    Gateway(HeaderValue),
    Nothing,
    ApiKey(Arc<KeySlot>),
}

/// Why a token's request gets no credential to go upstream with. The service renders each as
/// Elasticsearch would (`service::rescue`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Withheld {
    /// The token's account is no longer declared: refused as an unknown account's token is.
    UnknownAccount,
    /// The account's local access rules do not allow `method path`.
    AccessDenied {
        method: Method,
        path: String,
        account: String,
    },
    /// The account's `auto` API key is being made; retry shortly.
    CredentialPending { account: String },
}

/// What goes upstream for one request.
pub enum Presented {
    Fixed(Authorization),
    /// An `auto` key; a 401 for it means the key must be replaced.
    ApiKey(HeaderValue, Arc<KeySlot>),
}

impl Presented {
    /// The header to send, and the key to report back if the cluster refuses it.
    pub fn into_parts(self) -> (Authorization, Option<(HeaderValue, Arc<KeySlot>)>) {
        match self {
            Presented::Fixed(authorization) => (authorization, None),
            Presented::ApiKey(value, slot) => {
                (Authorization::Set(value.clone()), Some((value, slot)))
            }
        }
    }
}

/// The credentials of every account, and the gateway's.
pub struct UpstreamAuth {
    gateway: Option<HeaderValue>,
    /// In the accounts registry's order, searched by principal.
    policies: Vec<(AccountId, Policy)>,
    keys: Option<Arc<ApiKeys>>,
}

impl UpstreamAuth {
    /// Resolves every account's credential; loads saved API keys when any account is `auto`.
    /// Logs, per account, which kind of credential its requests carry.
    pub fn open(config: &Config, accounts: &Accounts) -> Result<UpstreamAuth, OpenKeysError> {
        let gateway = config.upstream.authorization.clone();
        let default = &config.upstream.service_credentials;
        let settings = |id: &AccountId| config.service_accounts.iter().find(|a| &a.account == id);
        let mut auto = Vec::new();
        let mut resolved = Vec::new();
        for (id, descriptor) in accounts.matching(None, None) {
            let own = settings(id);
            let mode = own.and_then(|a| a.credential.as_ref()).unwrap_or(default);
            let access = own.and_then(|a| a.access.clone());
            let (value, kind) = resolve(mode, gateway.as_ref());
            if let Kind::Auto = kind {
                auto.push((id.clone(), descriptor));
            }
            resolved.push((id.clone(), value, access, kind));
        }
        let keys = match (&gateway, auto.is_empty()) {
            (Some(gateway), false) => Some(Arc::new(ApiKeys::open(
                &config.upstream,
                gateway.clone(),
                &config.server.data_dir,
                auto,
            )?)),
            _ => None,
        };
        let policies = resolved
            .into_iter()
            .map(|(id, value, access, kind)| {
                let credential = credential(kind, value, keys.as_deref(), &id);
                let described = described(&credential, keys.as_deref(), &id);
                tracing::info!(account = %id, credential = described, local_rules = access.is_some(), "service account upstream credential");
                (id, Policy { credential, access })
            })
            .collect();
        Ok(UpstreamAuth {
            gateway,
            policies,
            keys,
        })
    }

    /// What `account`'s requests carry upstream now, in a few words, for the status page:
    /// `auto key ok`, `auto key being made` (none yet, or the last one refused and being
    /// replaced), `configured`, `gateway credential` or `none`.
    pub fn credential_state(&self, account: &AccountId) -> Option<&'static str> {
        Some(match &self.policy(account)?.credential {
            Credential::Own(_) => "configured",
            Credential::Gateway(_) => "gateway credential",
            Credential::Nothing => "none",
            Credential::ApiKey(slot) if slot.current().is_some() => "auto key ok",
            Credential::ApiKey(_) => "auto key being made",
        })
    }

    /// The key maker, when any account uses `auto`.
    pub fn keys(&self) -> Option<&Arc<ApiKeys>> {
        self.keys.as_ref()
    }

    fn policy(&self, account: &AccountId) -> Option<&Policy> {
        let i = self
            .policies
            .binary_search_by(|(id, _)| id.as_str().cmp(account.as_str()))
            .ok()?;
        self.policies.get(i).map(|(_, p)| p)
    }

    /// What a request of `token` for `method path` carries upstream, after the account's
    /// local rules allowed it. A token of an account the configuration no longer declares is
    /// refused as Elasticsearch refuses an unknown account's.
    pub fn for_token(
        &self,
        token: &TokenIdentity,
        method: &Method,
        path: &str,
    ) -> Result<Presented, Withheld> {
        let Some(policy) = self.policy(&token.account) else {
            return Err(Withheld::UnknownAccount);
        };
        if let Some(rules) = &policy.access {
            if !rules.allows(method, path) {
                return Err(Withheld::AccessDenied {
                    method: method.clone(),
                    path: path.to_owned(),
                    account: token.account.to_string(),
                });
            }
        }
        Ok(match &policy.credential {
            Credential::Own(value) | Credential::Gateway(value) => {
                Presented::Fixed(Authorization::Set(value.clone()))
            }
            Credential::Nothing => Presented::Fixed(Authorization::Remove),
            Credential::ApiKey(slot) => match slot.current() {
                Some(value) => Presented::ApiKey(value, slot.clone()),
                None => {
                    return Err(Withheld::CredentialPending {
                        account: token.account.to_string(),
                    })
                }
            },
        })
    }

    /// Whether `token`'s requests to the cluster's security APIs may go upstream: only with a
    /// credential of the account's own, which the cluster judges. The gateway's credential would
    /// make the token the cluster's security administrator, and with none the gateway answers
    /// as Elasticsearch would rather than letting anonymous access decide.
    pub fn scoped(&self, token: &TokenIdentity) -> bool {
        self.policy(&token.account)
            .is_some_and(|p| matches!(p.credential, Credential::Own(_) | Credential::ApiKey(_)))
    }

    /// What a file-realm user's request carries: the gateway's credential.
    pub fn for_user(&self) -> Authorization {
        match &self.gateway {
            Some(value) => Authorization::Set(value.clone()),
            None => Authorization::Remove,
        }
    }

    /// The cluster answered 401 to an `auto` key: replace it.
    pub fn refused(&self, used: &HeaderValue, slot: &KeySlot) {
        if let Some(keys) = &self.keys {
            keys.refused(slot, used);
        }
    }
}

/// How an account's credential was resolved, before the key maker exists.
#[derive(Clone, Copy)]
enum Kind {
    Own,
    Gateway,
    Auto,
    Nothing,
}

/// What an account's configured `mode` comes to, given the gateway's own credential.
fn resolve(mode: &AccountCredential, gateway: Option<&HeaderValue>) -> (Option<HeaderValue>, Kind) {
    match (mode, gateway) {
        (AccountCredential::Configured(value), _) => (Some(value.clone()), Kind::Own),
        (AccountCredential::Gateway, Some(value)) => (Some(value.clone()), Kind::Gateway),
        (AccountCredential::Auto, Some(_)) => (None, Kind::Auto),
        // Without a credential of the gateway's there is nothing to stand in for or to make keys
        // with: the cluster is taken to run without security.
        (AccountCredential::Gateway | AccountCredential::Auto, None)
        | (AccountCredential::Nothing, _) => (None, Kind::Nothing),
    }
}

/// The credential an account's requests carry; an `auto` account gets its slot in the key maker.
fn credential(
    kind: Kind,
    value: Option<HeaderValue>,
    keys: Option<&ApiKeys>,
    id: &AccountId,
) -> Credential {
    match (kind, value) {
        (Kind::Own, Some(value)) => Credential::Own(value),
        (Kind::Gateway, Some(value)) => Credential::Gateway(value),
        (Kind::Auto, _) => {
            match keys.and_then(|k| k.slots().find(|s| s.account() == id).cloned()) {
                Some(slot) => Credential::ApiKey(slot),
                None => Credential::Nothing,
            }
        }
        _ => Credential::Nothing,
    }
}

/// The credential as the start-up log names it.
fn described(credential: &Credential, keys: Option<&ApiKeys>, id: &AccountId) -> &'static str {
    match credential {
        Credential::Own(_) => "configured credential",
        Credential::Gateway(_) => "the gateway's own credential (upstream.authorization)",
        Credential::Nothing => "no credential",
        Credential::ApiKey(_) if keys.is_some_and(|k| k.reused(id)) => {
            "API key limited to its role descriptor (reused)"
        }
        Credential::ApiKey(_) => "API key limited to its role descriptor (to be created)",
    }
}
