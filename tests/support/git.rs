//! Real git repositories for tests, and a real smart-HTTP git server on
//! 127.0.0.1 (`git http-backend` as CGI behind a tiny HTTP/1.1 server:
//! libgit2 does not speak git's dumb HTTP protocol).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

/// Runs the real `git` with a fixed identity; panics with stderr on failure.
pub fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .args([
            "-c",
            "init.defaultBranch=main",
            "-c",
            "protocol.file.allow=always",
        ])
        .args(args)
        .current_dir(dir)
        .env("GIT_AUTHOR_NAME", "AIGIS Test")
        .env("GIT_AUTHOR_EMAIL", "test@example.invalid")
        .env("GIT_COMMITTER_NAME", "AIGIS Test")
        .env("GIT_COMMITTER_EMAIL", "test@example.invalid")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("HOME", dir)
        .output()
        .expect("run git");
    assert!(
        out.status.success(),
        "git {args:?} failed in {}: {}",
        dir.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// A non-bare repository with branch `main`.
pub struct TestRepo {
    pub dir: PathBuf,
}

impl TestRepo {
    pub fn new(parent: &Path, name: &str) -> TestRepo {
        let dir = parent.join(name);
        std::fs::create_dir_all(&dir).expect("create repo dir");
        git(&dir, &["init", "-q"]);
        TestRepo { dir }
    }

    pub fn write(&self, rel: &str, contents: &str) {
        let path = self.dir.join(rel);
        if let Some(p) = path.parent() {
            std::fs::create_dir_all(p).expect("create dirs");
        }
        std::fs::write(path, contents).expect("write file");
    }

    /// Commits everything; returns the new commit's sha.
    pub fn commit(&self, msg: &str) -> String {
        git(&self.dir, &["add", "-A"]);
        git(&self.dir, &["commit", "-q", "-m", msg]);
        git(&self.dir, &["rev-parse", "HEAD"])
    }

    pub fn file_url(&self) -> String {
        format!("file://{}", self.dir.display())
    }
}

/// Serves every repository under a directory at `http://127.0.0.1:PORT/<name>`.
/// Stops when dropped.
pub struct GitHttpServer {
    port: u16,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl GitHttpServer {
    pub fn start(root: &Path) -> GitHttpServer {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1");
        listener.set_nonblocking(true).expect("nonblocking");
        let port = listener.local_addr().expect("addr").port();
        let stop = Arc::new(AtomicBool::new(false));
        let root = root.to_path_buf();
        let backend = PathBuf::from(git(&root, &["--exec-path"])).join("git-http-backend");
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            while !flag.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((stream, _)) => {
                        let (root, backend) = (root.clone(), backend.clone());
                        std::thread::spawn(move || {
                            let _ = serve(stream, &root, &backend);
                        });
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(10)),
                }
            }
        });
        GitHttpServer {
            port,
            stop,
            thread: Some(thread),
        }
    }

    pub fn url(&self, repo: &str) -> String {
        format!("http://127.0.0.1:{}/{repo}", self.port)
    }
}

impl Drop for GitHttpServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// One request (no keep-alive): parse it, run git-http-backend, relay.
fn serve(stream: TcpStream, root: &Path, backend: &Path) -> std::io::Result<()> {
    stream.set_nonblocking(false)?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut request_line = String::new();
    reader.read_line(&mut request_line)?;
    let mut parts = request_line.split_whitespace();
    let method = parts.next().unwrap_or("GET").to_string();
    let target = parts.next().unwrap_or("/").to_string();
    let (path, query) = target.split_once('?').unwrap_or((&target, ""));
    let mut content_type = String::new();
    let mut content_length = 0usize;
    let mut encoding = String::new();
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 || line.trim().is_empty() {
            break;
        }
        if let Some((k, v)) = line.split_once(':') {
            match k.trim().to_ascii_lowercase().as_str() {
                "content-type" => content_type = v.trim().to_string(),
                "content-length" => content_length = v.trim().parse().unwrap_or(0),
                "content-encoding" => encoding = v.trim().to_string(),
                _ => {}
            }
        }
    }
    let mut body = vec![0u8; content_length];
    reader.read_exact(&mut body)?;
    let mut cmd = Command::new(backend);
    cmd.env_clear()
        .env("GIT_PROJECT_ROOT", root)
        .env("GIT_HTTP_EXPORT_ALL", "1")
        .env("REQUEST_METHOD", &method)
        .env("PATH_INFO", path)
        .env("QUERY_STRING", query)
        .env("CONTENT_TYPE", &content_type)
        .env("CONTENT_LENGTH", content_length.to_string())
        .env("REMOTE_ADDR", "127.0.0.1")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    if !encoding.is_empty() {
        cmd.env("HTTP_CONTENT_ENCODING", &encoding);
    }
    let mut child = cmd.spawn()?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin.write_all(&body)?;
    }
    let out = child.wait_with_output()?;
    // CGI output: headers, blank line, body. "Status:" becomes the status line.
    let raw = out.stdout;
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|i| (i, 4))
        .or_else(|| raw.windows(2).position(|w| w == b"\n\n").map(|i| (i, 2)));
    let (head, body) = match split {
        Some((i, n)) => (&raw[..i], &raw[i + n..]),
        None => (&raw[..0], &raw[..]),
    };
    let head = String::from_utf8_lossy(head);
    let mut status = "200 OK".to_string();
    let mut headers = String::new();
    for line in head.lines() {
        match line.split_once(':') {
            Some((k, v)) if k.eq_ignore_ascii_case("status") => status = v.trim().to_string(),
            Some(_) => {
                headers.push_str(line.trim_end());
                headers.push_str("\r\n");
            }
            None => {}
        }
    }
    let mut stream = stream;
    write!(
        stream,
        "HTTP/1.1 {status}\r\n{headers}Content-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )?;
    stream.write_all(body)?;
    stream.flush()
}
