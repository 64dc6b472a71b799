//! Conversation tokens: what a page holds instead of the channel key. A token admits one conversation
//! (or, before its first message, none yet: the reply to that message carries a token bound to the
//! conversation CAIC started), expires, and is signed by the service (HS256, `CONVERSATION_TOKEN_SECRET`,
//! with a `_NEXT` accepted during a rotation). Its expiry is checked on the clock port, not the
//! library's, so tests can move time.

use jsonwebtoken::{decode, encode, Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

use crate::config::{Keys, TokenSettings};
use crate::domain::{SessionId, VerifiedIdentity};

/// What a valid token admits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConversationToken {
    /// The conversation it is bound to; `None` before its first message.
    pub session: Option<SessionId>,
    /// Random, per minted token and kept by the tokens that follow it (bound, refreshed): what scopes
    /// a first message's `Idempotency-Key`, so that two pages' first messages never share one.
    pub id: String,
    /// Epoch seconds.
    pub expires_at: i64,
    /// Who the site vouched for when the token was minted.
    pub identity: Option<VerifiedIdentity>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("the conversation token has expired")]
    Expired,
    /// Forged, cut short, signed with a retired secret, or not a token at all.
    #[error("the conversation token is not valid")]
    Invalid,
}

#[derive(Serialize, Deserialize)]
struct Claims {
    exp: i64,
    iat: i64,
    jti: String,
    /// The conversation, once bound.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    sid: Option<String>,
    /// The verified identity, if the site gave one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    idn: Option<VerifiedIdentity>,
}

/// What pages may do with tokens: the keys that issue and check them, and the quotas of their holders.
#[derive(Clone)]
pub struct PageTokens {
    pub keys: TokenKeys,
    /// Messages (and refreshes) one conversation may send a minute.
    pub messages_per_minute: u32,
    /// Tokens a page may mint a minute from one source address.
    pub mints_per_minute: u32,
    /// The identities a site's backend signs for its pages, when it does.
    pub identities: Option<IdentityKeys>,
}

impl From<&TokenSettings> for PageTokens {
    fn from(settings: &TokenSettings) -> Self {
        Self {
            keys: TokenKeys::from(settings),
            messages_per_minute: settings.messages_per_minute,
            mints_per_minute: settings.mints_per_minute,
            identities: settings.identity_secret.clone().map(IdentityKeys::new),
        }
    }
}

impl From<&TokenSettings> for TokenKeys {
    fn from(settings: &TokenSettings) -> Self {
        TokenKeys::new(settings.secret.clone(), settings.lifetime_secs)
    }
}

/// Issues and checks tokens with the configured secret (and its successor during a rotation).
#[derive(Clone)]
pub struct TokenKeys {
    secrets: Keys,
    lifetime_secs: i64,
}

impl TokenKeys {
    pub fn new(secrets: Keys, lifetime_secs: i64) -> Self {
        Self {
            secrets,
            lifetime_secs,
        }
    }

    /// A new token for the first message of a new conversation, for `identity` if the site vouched
    /// for one, valid from `now` for the configured lifetime; and when it expires.
    pub fn issue(
        &self,
        identity: Option<&VerifiedIdentity>,
        now: i64,
    ) -> Result<(String, i64), TokenError> {
        let id = uuid::Uuid::new_v4().simple().to_string();
        self.sign(id, None, identity.cloned(), now)
    }

    /// The token that follows `token` for `session` (bound by a first message, moved along to CAIC's
    /// new session, or refreshed with `token.session`): the same id and identity, a new lifetime.
    pub fn follow(
        &self,
        token: &ConversationToken,
        session: Option<&SessionId>,
        now: i64,
    ) -> Result<(String, i64), TokenError> {
        self.sign(token.id.clone(), session, token.identity.clone(), now)
    }

    fn sign(
        &self,
        id: String,
        session: Option<&SessionId>,
        identity: Option<VerifiedIdentity>,
        now: i64,
    ) -> Result<(String, i64), TokenError> {
        let expires_at = now + self.lifetime_secs;
        let claims = Claims {
            exp: expires_at,
            iat: now,
            jti: id,
            sid: session.map(|s| s.as_str().to_owned()),
            idn: identity,
        };
        let key = EncodingKey::from_secret(self.secrets.current.as_bytes());
        let token = encode(&Header::new(Algorithm::HS256), &claims, &key)
            .map_err(|_| TokenError::Invalid)?;
        Ok((token, expires_at))
    }

    /// What `token` admits at `now`: signed with one of the secrets, unexpired, naming a usable
    /// session id if any.
    pub fn verify(&self, token: &str, now: i64) -> Result<ConversationToken, TokenError> {
        let mut validation = Validation::new(Algorithm::HS256);
        // Checked below against the clock port.
        validation.validate_exp = false;
        validation.required_spec_claims = ["exp".to_owned()].into();
        let claims: Claims =
            signed_by_any(&self.secrets, token, &validation).ok_or(TokenError::Invalid)?;
        if claims.exp <= now {
            return Err(TokenError::Expired);
        }
        let session = claims
            .sid
            .map(|id| SessionId::parse(&id).map_err(|_| TokenError::Invalid))
            .transpose()?;
        Ok(ConversationToken {
            session,
            id: claims.jti,
            expires_at: claims.exp,
            identity: claims.idn,
        })
    }
}

/// The claims of `token` if one of `secrets` signed it (the current one, or the next during a rotation).
fn signed_by_any<T: serde::de::DeserializeOwned>(
    secrets: &Keys,
    token: &str,
    validation: &Validation,
) -> Option<T> {
    secrets.all().find_map(|secret| {
        decode::<T>(
            token,
            &DecodingKey::from_secret(secret.as_bytes()),
            validation,
        )
        .ok()
        .map(|data| data.claims)
    })
}

/// The longest identity token a page may present, and the longest it may be valid for: a leaked one
/// speaks for its customer until it expires.
const MAX_IDENTITY_TOKEN_BYTES: usize = 4_096;
pub const MAX_IDENTITY_TOKEN_SECS: i64 = 86_400;

/// Checks the identities a site's backend signs for its pages (`IDENTITY_SECRET`, with a `_NEXT`): a
/// JWT (HS256) whose `sub` is the customer's external id, with optional `name` and `email`, and an
/// `exp` at most 24 hours ahead. Intercom and Zendesk take the same shape.
#[derive(Clone)]
pub struct IdentityKeys {
    secrets: Keys,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdentityError {
    #[error("the identity token is not valid (signature, expiry at most 24 hours ahead, or sub)")]
    Invalid,
    #[error("{0}")]
    Field(&'static str),
}

#[derive(Deserialize)]
struct IdentityClaims {
    sub: String,
    exp: i64,
    name: Option<String>,
    email: Option<String>,
}

impl IdentityKeys {
    pub fn new(secrets: Keys) -> Self {
        Self { secrets }
    }

    pub fn verify(&self, token: &str, now: i64) -> Result<VerifiedIdentity, IdentityError> {
        if token.len() > MAX_IDENTITY_TOKEN_BYTES {
            return Err(IdentityError::Invalid);
        }
        let mut validation = Validation::new(Algorithm::HS256);
        validation.validate_exp = false;
        validation.required_spec_claims = ["exp".to_owned(), "sub".to_owned()].into();
        let claims: IdentityClaims =
            signed_by_any(&self.secrets, token, &validation).ok_or(IdentityError::Invalid)?;
        if claims.exp <= now || claims.exp > now.saturating_add(MAX_IDENTITY_TOKEN_SECS) {
            return Err(IdentityError::Invalid);
        }
        VerifiedIdentity::parse(&claims.sub, claims.name.as_deref(), claims.email.as_deref())
            .map_err(IdentityError::Field)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(current: &str, next: Option<&str>) -> TokenKeys {
        TokenKeys::new(
            Keys {
                current: current.into(),
                next: next.map(Into::into),
            },
            3_600,
        )
    }

    #[test]
    fn a_token_admits_what_it_was_issued_for_until_it_expires() {
        let keys = keys("token-secret-0123456789", None);
        let session = SessionId::parse("s-1").unwrap();
        let (unbound, _) = keys.issue(None, 1_000).unwrap();
        let unbound = keys.verify(&unbound, 1_000).unwrap();
        let (token, expires_at) = keys.follow(&unbound, Some(&session), 1_000).unwrap();
        assert_eq!(expires_at, 4_600);
        let admitted = keys.verify(&token, 4_599).unwrap();
        assert_eq!(
            (admitted.session, admitted.expires_at),
            (Some(session), expires_at)
        );
        assert_eq!(keys.verify(&token, 4_600), Err(TokenError::Expired));
        assert_eq!(unbound.session, None);
        assert_eq!(unbound.id, admitted.id, "a bound token keeps its id");
        let (another, _) = keys.issue(None, 1_000).unwrap();
        assert_ne!(
            keys.verify(&another, 1_001).unwrap().id,
            admitted.id,
            "each minted token its own id"
        );
    }

    #[test]
    fn forged_cut_short_and_retired_tokens_are_invalid_and_the_next_secret_is_accepted() {
        let old = keys("old-secret-0123456789", None);
        let rotating = keys("old-secret-0123456789", Some("new-secret-0123456789"));
        let rotated = keys("new-secret-0123456789", None);
        let (token, _) = old.issue(None, 1_000).unwrap();
        assert!(
            rotating.verify(&token, 1_001).is_ok(),
            "accepted during the rotation"
        );
        assert_eq!(
            rotated.verify(&token, 1_001),
            Err(TokenError::Invalid),
            "retired"
        );
        let (newer, _) = keys("new-secret-0123456789", None)
            .issue(None, 1_000)
            .unwrap();
        assert!(
            rotating.verify(&newer, 1_001).is_ok(),
            "the next secret's tokens too"
        );
        assert_eq!(
            old.verify(&token[..token.len() - 3], 1_001),
            Err(TokenError::Invalid)
        );
        assert_eq!(old.verify("not.a.token", 1_001), Err(TokenError::Invalid));
        let mut parts: Vec<&str> = token.split('.').collect();
        // {"exp":9999999999,"iat":0,"jti":"x","sid":"other"}, under the old signature.
        let forged_claims = "eyJleHAiOjk5OTk5OTk5OTksImlhdCI6MCwianRpIjoieCIsInNpZCI6Im90aGVyIn0";
        parts[1] = forged_claims;
        assert_eq!(
            old.verify(&parts.join("."), 1_001),
            Err(TokenError::Invalid)
        );
    }
}
