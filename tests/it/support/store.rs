//! A bare store on either backend (`Fixture`): a fresh redb directory or a
//! fresh `redis-server`, reopened on request; and token records to put in it.

use zcc_rtms::secret::Secret;
use zcc_rtms::store::{Backend, DEFAULT_PREFIX, Store, TokenKey, TokenRecord};

use super::Kind;
use super::redis::RedisServer;

pub struct Fixture {
    pub store: Store,
    pub key: TokenKey,
    pub backend: Backend,
    pub dir: Option<tempfile::TempDir>,
    pub redis: Option<RedisServer>,
}

impl Fixture {
    pub async fn new(kind: Kind) -> Fixture {
        Self::with(kind, false).await
    }

    pub async fn with(kind: Kind, aof: bool) -> Fixture {
        let key = TokenKey::generate();
        let (backend, dir, redis) = match kind {
            Kind::Embedded => {
                let dir = tempfile::tempdir().expect("tempdir");
                let backend = Backend::Embedded {
                    dir: dir.path().to_owned(),
                };
                (backend, Some(dir), None)
            }
            Kind::Redis => {
                let server = if aof {
                    RedisServer::start_with_aof().await
                } else {
                    RedisServer::start().await
                };
                let backend = Backend::Redis {
                    url: Secret::new(server.url()),
                    ca_cert: None,
                };
                (backend, None, Some(server))
            }
        };
        Self::open(key, backend, dir, redis).await
    }

    async fn open(
        key: TokenKey,
        backend: Backend,
        dir: Option<tempfile::TempDir>,
        redis: Option<RedisServer>,
    ) -> Fixture {
        let store = Store::open(&backend, &key, DEFAULT_PREFIX)
            .await
            .expect("store opens");
        Fixture {
            store,
            key,
            backend,
            dir,
            redis,
        }
    }

    /// Close the store and open it again (same file / same server).
    pub async fn reopened(self) -> Fixture {
        let Fixture {
            store,
            key,
            backend,
            dir,
            redis,
        } = self;
        // redb locks its file: the old handle must be gone first.
        drop(store);
        Self::open(key, backend, dir, redis).await
    }
}

pub fn tokens(account: &str, user: &str, n: u32) -> TokenRecord {
    TokenRecord {
        account_id: account.into(),
        user_id: user.into(),
        access_token: format!("access-{account}-{user}-{n}"),
        refresh_token: format!("refresh-{account}-{user}-{n}"),
        expires_at_ms: 1_900_000_000_000 + i64::from(n),
        scope: "contact_center:update:engagement_rtms_app_status".into(),
        api_url: None,
        needs_auth: false,
        needs_auth_reason: None,
        updated_at_ms: 1,
    }
}
