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
            Some(addr) => Some(bind(addr, None, &mut client).await?),
            None => None,
        };
        let https_addr = match (&config.tls, tls) {
            (Some(settings), Some(tls)) => {
                Some(bind(settings.listen, Some(tls), &mut client).await?)
            }
            _ => None,
        };
        let (admin, admin_addr) = match config.admin.listen {
            Some(addr) => {
                let mut bound = Vec::new();
                let addr = bind(addr, None, &mut bound).await?;
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

/// Binds `addr` and adds it to `listeners`; returns the bound address.
async fn bind(
    addr: SocketAddr,
    tls: Option<&ServerTls>,
    listeners: &mut Vec<Listener>,
) -> Result<SocketAddr, StartError> {
    let bind_error = |source| StartError::Bind { addr, source };
    let tcp = TcpListener::bind(addr).await.map_err(bind_error)?;
    let bound = tcp.local_addr().map_err(bind_error)?;
    listeners.push(Listener {
        tcp,
        tls: tls.map(ServerTls::acceptor),
    });
    Ok(bound)
}
