//! HTTP for the tests: `serve.py` on loopback (a static server that refuses,
//! 404s, corrupts, throttles and dies on demand, logging every request), a raw
//! HTTP client for poking at servers, and `python3 -m http.server` inside a
//! network namespace. Every server is killed on drop.

use std::fs;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use super::cmd::{kill_group, text};
use super::lan::Netns;

// ---------------------------------------------------------------------------
// HTTP servers
// ---------------------------------------------------------------------------

#[derive(Clone, Debug, Default)]
pub struct ServeOptions {
    pub port: u16,
    pub no_summary: bool,
    /// Paths (relative to the repository) answered with 404.
    pub missing: Vec<String>,
    /// Paths served with one byte flipped.
    pub corrupt: Vec<String>,
    pub rate: Option<u64>,
    pub die_after: Option<u64>,
    /// Path prefixes sent one byte a second.
    pub trickle: Vec<String>,
    /// Paths sent, then followed by zeros without end.
    pub endless: Vec<String>,
}

/// `serve.py` on 127.0.0.1, killed on drop. Every request is logged.
pub struct Server {
    child: Option<Child>,
    pub port: u16,
    pub log: PathBuf,
    _files: tempfile::TempDir,
}

pub fn python() -> &'static str {
    if Path::new("/usr/bin/python3").exists() {
        "/usr/bin/python3"
    } else {
        "python3"
    }
}

impl Server {
    pub fn start(root: &Path, options: ServeOptions) -> Self {
        let files = super::tempdir();
        let log = files.path().join("requests.log");
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/common/serve.py");
        let mut cmd = Command::new(python());
        cmd.arg(&script)
            .arg(root)
            .arg("--port")
            .arg(options.port.to_string())
            .arg("--log")
            .arg(&log);
        if options.no_summary {
            cmd.arg("--no-summary");
        }
        if !options.missing.is_empty() {
            let list = files.path().join("missing.txt");
            fs::write(&list, options.missing.join("\n") + "\n").unwrap();
            cmd.arg("--missing").arg(&list);
        }
        for path in &options.corrupt {
            cmd.arg("--corrupt").arg(path);
        }
        if let Some(rate) = options.rate {
            cmd.arg("--rate").arg(rate.to_string());
        }
        if let Some(n) = options.die_after {
            cmd.arg("--die-after").arg(n.to_string());
        }
        for prefix in &options.trickle {
            cmd.arg("--trickle").arg(prefix);
        }
        for path in &options.endless {
            cmd.arg("--endless").arg(path);
        }
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start serve.py");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .expect("read the port");
        let port = match line.trim().parse() {
            Ok(port) => port,
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                panic!("serve.py did not print a port: {line:?}");
            }
        };
        Server {
            child: Some(child),
            port,
            log,
            _files: files,
        }
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The id discovery gives this server as a `--static-source`.
    pub fn static_id(&self) -> String {
        format!("static:{}", self.url())
    }

    /// Every path requested so far, in order.
    pub fn requests(&self) -> Vec<String> {
        fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .filter(|line| !line.starts_with("sent "))
            .map(str::to_owned)
            .collect()
    }

    /// Bytes sent per finished response, in order: (path, bytes).
    pub fn sent(&self) -> Vec<(String, u64)> {
        fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .filter_map(|line| {
                let mut fields = line.strip_prefix("sent ")?.rsplitn(2, ' ');
                let bytes = fields.next()?.parse().ok()?;
                Some((fields.next()?.to_owned(), bytes))
            })
            .collect()
    }

    /// The objects requested so far, as `hex.ext` names.
    pub fn object_requests(&self) -> Vec<String> {
        self.requests()
            .iter()
            .filter_map(|p| p.strip_prefix("objects/"))
            .map(|p| p.replace('/', ""))
            .collect()
    }

    /// Whether the process has exited (e.g. after `--die-after`).
    pub fn exited(&mut self) -> bool {
        match &mut self.child {
            Some(child) => child.try_wait().ok().flatten().is_some(),
            None => true,
        }
    }

    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A loopback port nothing listens on: bound, then closed.
pub fn refused_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

// ---------------------------------------------------------------------------
// Raw HTTP
// ---------------------------------------------------------------------------

/// A parsed HTTP response.
#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// A TCP connection to `addr` from the loopback address `source` (all of
/// 127.0.0.0/8 is this computer), so that one test can be several clients.
pub fn connect_from(source: [u8; 4], addr: SocketAddr) -> TcpStream {
    use std::os::fd::FromRawFd;
    let SocketAddr::V4(target) = addr else {
        panic!("IPv4 only: {addr}")
    };
    let sockaddr = |ip: [u8; 4], port: u16| libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: port.to_be(),
        sin_addr: libc::in_addr {
            s_addr: u32::from_be_bytes(ip).to_be(),
        },
        sin_zero: [0; 8],
    };
    let len = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
    // SAFETY: a new socket, bound and connected with correctly sized addresses,
    // then owned by the TcpStream.
    unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0);
        assert!(fd >= 0, "socket: {}", std::io::Error::last_os_error());
        let stream = TcpStream::from_raw_fd(fd);
        let local = sockaddr(source, 0);
        let bound = libc::bind(fd, &local as *const _ as *const libc::sockaddr, len);
        assert_eq!(
            bound,
            0,
            "bind {source:?}: {}",
            std::io::Error::last_os_error()
        );
        let remote = sockaddr(target.ip().octets(), target.port());
        let connected = libc::connect(fd, &remote as *const _ as *const libc::sockaddr, len);
        assert_eq!(
            connected,
            0,
            "connect {source:?} -> {addr}: {}",
            std::io::Error::last_os_error()
        );
        stream
    }
}

/// Whether the server closed `stream` (EOF or an error) within `wait`; reads and
/// discards whatever it sent.
pub fn closed_within(stream: &mut TcpStream, wait: Duration) -> bool {
    stream
        .set_read_timeout(Some(wait.max(Duration::from_millis(1))))
        .unwrap();
    let mut buf = [0u8; 4096];
    let deadline = Instant::now() + wait;
    loop {
        match stream.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => {}
            Err(e)
                if e.kind() == std::io::ErrorKind::WouldBlock
                    || e.kind() == std::io::ErrorKind::TimedOut =>
            {
                return false
            }
            Err(_) => return true,
        }
        if Instant::now() >= deadline {
            return false;
        }
    }
}

/// Sends `request` bytes exactly as given (no normalisation) and reads the response
/// until the server closes the connection.
pub fn raw_http(addr: SocketAddr, request: &[u8]) -> Response {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    stream.write_all(request).unwrap();
    let mut data = Vec::new();
    let _ = stream.read_to_end(&mut data);
    parse_response(&data)
        .unwrap_or_else(|| panic!("no HTTP response to {:?}: {:?}", text(request), text(&data)))
}

pub fn parse_response(data: &[u8]) -> Option<Response> {
    let end = data.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = text(&data[..end]);
    let mut lines = head.split("\r\n");
    let status = lines.next()?.split(' ').nth(1)?.parse().ok()?;
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .collect();
    Some(Response {
        status,
        headers,
        body: data[end + 4..].to_vec(),
    })
}

/// `METHOD PATH` with `Connection: close` and extra header lines.
pub fn request(addr: SocketAddr, method: &str, path: &str, extra: &[(&str, &str)]) -> Response {
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for (k, v) in extra {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    raw_http(addr, req.as_bytes())
}

// ---------------------------------------------------------------------------
// In a namespace
// ---------------------------------------------------------------------------

/// `python3 -m http.server` inside a namespace, serving `dir` on `addr:port`.
pub struct HttpServer {
    child: Child,
}

impl HttpServer {
    pub fn start(ns: &Netns, dir: &Path, addr: &str, port: u16) -> Self {
        let mut cmd = ns.command("python3");
        cmd.args([
            "-m",
            "http.server",
            &port.to_string(),
            "--bind",
            addr,
            "--directory",
        ])
        .arg(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
        cmd.process_group(0);
        let child = cmd.spawn().expect("python3 -m http.server");
        let server = Self { child };
        // Wait until it answers.
        let deadline = Instant::now() + Duration::from_secs(10);
        let url = format!("http://{addr}:{port}/");
        loop {
            let ok = ns
                .command("python3")
                .args([
                    "-c",
                    "import sys,urllib.request; urllib.request.urlopen(sys.argv[1], timeout=1)",
                    &url,
                ])
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success());
            if ok {
                break;
            }
            assert!(Instant::now() < deadline, "HTTP server did not start");
            thread::sleep(Duration::from_millis(100));
        }
        server
    }
}

impl Drop for HttpServer {
    fn drop(&mut self) {
        kill_group(&mut self.child);
    }
}
