//! Running under systemd: readiness and stop notifications (`sd_notify`).
//!
//! The protocol is one datagram per state change to the unix socket named
//! by `NOTIFY_SOCKET` (a path, or `@name` for the abstract namespace). The
//! socket is opened and connected in [`Notifier::from_env`], which the host
//! calls *before* it confines itself: afterwards Landlock may forbid
//! reaching a socket outside the data dir, but a connected socket stays
//! usable.

use std::os::unix::net::UnixDatagram;

/// A connected notify socket, or nothing when not run by systemd.
pub struct Notifier {
    socket: Option<UnixDatagram>,
}

impl Notifier {
    /// Connects to `$NOTIFY_SOCKET` if it is set. A socket that cannot be
    /// reached is logged and ignored: the host must run without systemd.
    pub fn from_env() -> Self {
        let Some(name) = std::env::var_os("NOTIFY_SOCKET") else {
            return Notifier { socket: None };
        };
        let socket = (|| -> std::io::Result<UnixDatagram> {
            let s = UnixDatagram::unbound()?;
            let bytes = name.as_encoded_bytes();
            if let Some(abstract_name) = bytes.strip_prefix(b"@") {
                #[cfg(target_os = "linux")]
                {
                    use std::os::linux::net::SocketAddrExt;
                    let addr = std::os::unix::net::SocketAddr::from_abstract_name(abstract_name)?;
                    s.connect_addr(&addr)?;
                }
                #[cfg(not(target_os = "linux"))]
                {
                    let _ = abstract_name;
                    return Err(std::io::Error::other("abstract sockets are Linux only"));
                }
            } else {
                s.connect(std::path::Path::new(&name))?;
            }
            Ok(s)
        })();
        match socket {
            Ok(s) => Notifier { socket: Some(s) },
            Err(e) => {
                tracing::warn!(error = %e, socket = ?name, "cannot reach NOTIFY_SOCKET; not notifying systemd");
                Notifier { socket: None }
            }
        }
    }

    /// Sends `state` (e.g. `READY=1`, `STOPPING=1`, `STATUS=...`), if
    /// notifying at all.
    pub fn notify(&self, state: &str) {
        if let Some(s) = &self.socket
            && let Err(e) = s.send(state.as_bytes())
        {
            tracing::warn!(error = %e, state, "sd_notify failed");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notifies_a_path_socket() {
        let d = tempfile::tempdir().unwrap();
        let path = d.path().join("notify");
        let server = UnixDatagram::bind(&path).unwrap();
        // The connecting half of from_env (setting NOTIFY_SOCKET would be
        // a process-wide change under parallel tests).
        let s = UnixDatagram::unbound().unwrap();
        s.connect(&path).unwrap();
        let n = Notifier { socket: Some(s) };
        n.notify("READY=1");
        let mut buf = [0u8; 64];
        let k = server.recv(&mut buf).unwrap();
        assert_eq!(&buf[..k], b"READY=1");
    }
}
