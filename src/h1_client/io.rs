//! The byte stream under a node connection: TCP, or TLS over it, without the adapters between
//! tokio's and hyper's I/O traits that the connector's type carries.

use hyper_rustls::MaybeHttpsStream;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio_util::either::Either;

/// A connection's stream: plain TCP (left) or TLS over it (right, boxed: the TLS state is large
/// and a pooled connection is moved around).
pub type Io = Either<TcpStream, Box<tokio_rustls::client::TlsStream<TokioIo<TokioIo<TcpStream>>>>>;

/// The stream the connector made, unwrapped to tokio's I/O traits.
pub fn from_connector(stream: MaybeHttpsStream<TokioIo<TcpStream>>) -> Io {
    match stream {
        MaybeHttpsStream::Http(tcp) => Either::Left(tcp.into_inner()),
        MaybeHttpsStream::Https(tls) => Either::Right(Box::new(tls.into_inner())),
    }
}
