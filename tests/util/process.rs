//! Third-party servers as child processes on 127.0.0.1: started on a free port, awaited until they accept
//! connections, killed when dropped.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A server process. Dropping it kills the process.
#[derive(Debug)]
pub struct ChildServer {
    child: Child,
    /// `http://127.0.0.1:<port>`.
    pub endpoint: String,
}

/// A free port on 127.0.0.1 (a server that needs a port number; 0 would leave us guessing which it took).
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).expect("a free port")
}

impl ChildServer {
    /// Runs `command(port)` on free ports (a port picked here can be taken before the server binds it: up to
    /// three tries) until one accepts connections within `timeout`. Panics, naming `test` and `what`, otherwise.
    pub fn start(
        test: &str,
        what: &str,
        exe: &Path,
        timeout: Duration,
        command: impl Fn(&mut Command, u16),
    ) -> ChildServer {
        let mut last = String::new();
        for _ in 0..3 {
            let port = free_port();
            let mut cmd = Command::new(exe);
            command(&mut cmd, port);
            let mut child = cmd
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap_or_else(|e| panic!("{test}: cannot start {what} ({}): {e}", exe.display()));
            let addr = SocketAddr::from(([127, 0, 0, 1], port));
            let deadline = Instant::now() + timeout;
            loop {
                if let Ok(Some(status)) = child.try_wait() {
                    last = format!("{what} on port {port} exited with {status}");
                    break;
                }
                if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
                    return ChildServer { child, endpoint: format!("http://{addr}") };
                }
                if Instant::now() > deadline {
                    let _ = child.kill();
                    let _ = child.wait();
                    panic!("{test}: {what} did not answer on {addr} within {} s", timeout.as_secs());
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        panic!("{test}: {what} would not start: {last}");
    }
}

impl Drop for ChildServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
