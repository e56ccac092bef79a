//! Every socket the gateway listens on, bound before anything is opened or written: a port
//! that is taken stops the start before the data directory is touched.

use std::net::SocketAddr;

use tokio::net::TcpListener;

use super::StartError;
use crate::config::Config;
use crate::listen::Listener;
use crate::tls::server::ServerTls;

/// The bound listeners and their addresses (port 0 in the configuration picks a free port).
pub(super) struct Bound {
    /// The plain and HTTPS listeners, served together.
    pub client: Vec<Listener>,
    pub http_addr: Option<SocketAddr>,
    pub https_addr: Option<SocketAddr>,
    pub admin: Option<Listener>,
    pub admin_addr: Option<SocketAddr>,
}

impl Bound {
    /// Binds what `config` names; `tls` terminates TLS on the HTTPS listener.
    pub async fn all(config: &Config, tls: Option<&ServerTls>) -> Result<Bound, StartError> {
        let mut client = Vec::new();
        let http_addr = match config.server.listen {
            Some(addr) => Some(bind(addr, None, &mut client, &CLIENT).await?),
            None => None,
        };
        let https_addr = match (&config.tls, tls) {
            (Some(settings), Some(tls)) => {
                Some(bind(settings.listen, Some(tls), &mut client, &HTTPS).await?)
            }
            _ => None,
        };
        let admin_tls = admin_tls(config, tls)?;
        let (admin, admin_addr) = match config.admin.listen {
            Some(addr) => {
                let mut bound = Vec::new();
                let addr = bind(addr, admin_tls.as_ref(), &mut bound, &ADMIN).await?;
                (bound.pop(), Some(addr))
            }
            None => (None, None),
        };
        Ok(Bound {
            client,
            http_addr,
            https_addr,
            admin,
            admin_addr,
        })
    }
}

/// The admin listener's TLS: the HTTPS listener's certificate, asking for a client certificate
/// signed by `admin.client_ca`; `None` (plain HTTP) without `client_ca`.
pub(super) fn admin_tls(
    config: &Config,
    tls: Option<&ServerTls>,
) -> Result<Option<ServerTls>, StartError> {
    match (&config.admin.client_ca, tls) {
        (Some(ca), Some(tls)) => tls
            .with_optional_client_ca(ca)
            .map(Some)
            .map_err(StartError::ListenerTls),
        _ => Ok(None),
    }
}

/// A listener's name and how an operator moves it, for the error when its address is taken.
struct Named {
    listener: &'static str,
    remedy: &'static str,
}

const CLIENT: Named = Named {
    listener: "client",
    remedy: "move it with --listen <addr> or [server] listen",
};
const HTTPS: Named = Named {
    listener: "https",
    remedy: "move it with [tls] listen",
};
const ADMIN: Named = Named {
    listener: "admin",
    remedy: "move it with --admin-listen <addr> or [admin] listen, or turn it off with \"\"",
};

/// Binds `addr` and adds it to `listeners`; returns the bound address.
async fn bind(
    addr: SocketAddr,
    tls: Option<&ServerTls>,
    listeners: &mut Vec<Listener>,
    named: &Named,
) -> Result<SocketAddr, StartError> {
    let bind_error = |source| StartError::Bind {
        addr,
        listener: named.listener,
        remedy: named.remedy,
        source,
    };
    let tcp = TcpListener::bind(addr).await.map_err(bind_error)?;
    let bound = tcp.local_addr().map_err(bind_error)?;
    listeners.push(Listener {
        tcp,
        tls: tls.map(ServerTls::acceptor),
    });
    Ok(bound)
}
