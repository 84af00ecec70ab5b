//! The simulated network under the nodes: `snode::transport::Transport` over turmoil's TCP.
//!
//! Owns nothing but the mapping of listen/connect onto turmoil's sockets, so every byte a node
//! sends to a peer (and the workload client to a node) crosses turmoil's links, where the
//! driver partitions, delays and breaks them. Must not decide anything: faults are the plan's.

use std::io;
use std::net::SocketAddr;

use snode::transport::{Acceptor, BoxFuture, BoxStream, Transport};

/// turmoil's TCP as a node's transport. Listening and connecting only work inside a turmoil
/// host (the node's software, or the client), which is where nodes run.
pub struct SimTransport;

struct SimAcceptor(turmoil::net::TcpListener);

impl Transport for SimTransport {
    fn listen(&self, addr: SocketAddr) -> BoxFuture<'_, io::Result<Box<dyn Acceptor>>> {
        Box::pin(async move {
            let l = turmoil::net::TcpListener::bind(addr).await?;
            Ok(Box::new(SimAcceptor(l)) as Box<dyn Acceptor>)
        })
    }

    fn connect(&self, addr: SocketAddr) -> BoxFuture<'_, io::Result<BoxStream>> {
        Box::pin(async move {
            let s = turmoil::net::TcpStream::connect(addr).await?;
            Ok(Box::new(s) as BoxStream)
        })
    }
}

impl Acceptor for SimAcceptor {
    fn accept(&mut self) -> BoxFuture<'_, io::Result<(BoxStream, SocketAddr)>> {
        Box::pin(async move {
            let (s, remote) = self.0.accept().await?;
            Ok((Box::new(s) as BoxStream, remote))
        })
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.0.local_addr()
    }
}
