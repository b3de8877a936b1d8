//! Answering requests: the whitelisted paths, `config`, the summary (regenerated
//! when refs change), files opened beneath the repository, conditional requests.

use super::*;

impl Inner {
    pub(super) fn handle(self: &Rc<Self>, msg: &soup::ServerMessage, path: &str) {
        self.bump(|s| s.requests += 1);
        let method = msg.method().map(|m| m.to_string()).unwrap_or_default();
        let head = method == "HEAD";
        if method != "GET" && !head {
            set_status(msg, 405);
            if let Some(headers) = msg.response_headers() {
                headers.replace("Allow", "GET, HEAD");
            }
            return;
        }
        // Whole bodies only: soup would copy a mapped body to answer a range.
        if let Some(headers) = msg.request_headers() {
            headers.remove("Range");
        }
        if self.connections.borrow().active >= self.limits.max_active_requests {
            self.bump(|s| s.busy += 1);
            set_status(msg, 503);
            if let Some(headers) = msg.response_headers() {
                headers.replace("Retry-After", "1");
            }
            return;
        }
        let Some(target) = parse_request_path(path, self.repo_index) else {
            self.not_found(msg);
            return;
        };
        let request = self.track_request(msg);
        match target {
            RepoPath::Summary => self.serve_summary(msg, request, false, head),
            RepoPath::SummarySig => self.serve_summary(msg, request, true, head),
            RepoPath::File {
                kind: FileKind::Config,
                ..
            } => self.serve_config(msg, head),
            RepoPath::File {
                relative,
                kind: FileKind::Object,
            } if !self.repo.mode().is_archive() && relative.ends_with(".filez") => {
                self.serve_made_filez(msg, &relative, head)
            }
            RepoPath::File { relative, kind } => self.serve_file(msg, &relative, kind, head),
        }
    }

    /// The `[core]` part of the config only: remotes (URLs, key paths) and Ferry's
    /// own settings are nobody else's business, and pulls read nothing more. The
    /// mode is always archive: a `bare*` repository is served as if it were one.
    pub(super) fn serve_config(&self, msg: &soup::ServerMessage, head: bool) {
        let Ok(config) = RepoConfig::load(&self.root) else {
            return self.not_found(msg);
        };
        let mut text = "[core]\nrepo_version=1\nmode=archive-z2\n".to_owned();
        if let Ok(Some(id)) = config.collection_id() {
            text.push_str(&format!("collection-id={id}\n"));
        }
        let etag = format!(
            "\"c-{}\"",
            &crate::repo::Checksum::digest(text.as_bytes()).to_hex()[..24]
        );
        let last_modified = std::fs::metadata(self.root.join("config"))
            .ok()
            .and_then(|m| u64::try_from(m.mtime()).ok())
            .unwrap_or_else(now_secs);
        self.respond(
            msg,
            glib::Bytes::from_owned(text.into_bytes()),
            &etag,
            last_modified,
            head,
        );
    }

    pub(super) fn not_found(&self, msg: &soup::ServerMessage) {
        self.bump(|s| s.not_found += 1);
        set_status(msg, 404);
    }

    pub(super) fn serve_summary(
        self: &Rc<Self>,
        msg: &soup::ServerMessage,
        request: Rc<RequestState>,
        signature: bool,
        head: bool,
    ) {
        let fingerprint = RepoFingerprint::of(&self.root);
        let current = {
            let mut state = self.summary.borrow_mut();
            if state.regenerating || state.fingerprint != fingerprint {
                msg.pause();
                state.waiting.push(Waiting {
                    msg: msg.clone(),
                    request,
                    signature,
                    head,
                });
                None
            } else {
                Some(state.current.clone())
            }
        };
        match current {
            Some(current) => self.respond_summary(msg, &current, signature, head),
            None => self.refresh(fingerprint),
        }
    }

    pub(super) fn respond_summary(
        &self,
        msg: &soup::ServerMessage,
        current: &ServedSummary,
        signature: bool,
        head: bool,
    ) {
        let data = if signature {
            match &current.signature {
                Some(sig) => sig.clone(),
                None => return self.not_found(msg),
            }
        } else {
            current.bytes.clone()
        };
        let last_modified = if current.last_modified > 0 {
            current.last_modified
        } else {
            now_secs()
        };
        let etag = if signature {
            format!("{}-sig\"", current.etag.trim_end_matches('"'))
        } else {
            current.etag.clone()
        };
        self.respond(msg, data, &etag, last_modified, head);
    }

    /// Regenerates the summary on a worker thread if the refs changed.
    pub(super) fn refresh(self: &Rc<Self>, fingerprint: RepoFingerprint) {
        {
            let mut state = self.summary.borrow_mut();
            if state.regenerating || (state.fingerprint == fingerprint && state.waiting.is_empty())
            {
                return;
            }
            state.regenerating = true;
        }
        let repo = self.repo.clone();
        let cache = self.cache.clone();
        let weak = Rc::downgrade(self);
        glib::spawn_future_local(async move {
            let result = gio::spawn_blocking(move || servable_refs(&repo, &cache)).await;
            if let Some(inner) = weak.upgrade() {
                let result = match result {
                    Ok(result) => result.map_err(|e| e.to_string()),
                    Err(_) => Err("the summary generation panicked".to_owned()),
                };
                inner.finish_refresh(fingerprint, result);
            }
        });
    }

    pub(super) fn finish_refresh(
        self: &Rc<Self>,
        fingerprint: RepoFingerprint,
        result: Result<ServableRefs, String>,
    ) {
        let mut changed = None;
        let (waiting, current) = {
            let mut state = self.summary.borrow_mut();
            state.regenerating = false;
            state.fingerprint = fingerprint;
            match result {
                Ok(refs) if !state.current.same_as(&refs) => {
                    // Strictly later than what peers saw, so they notice the change.
                    let last_modified = now_secs().max(state.current.last_modified + 1);
                    match ServedSummary::new(refs, last_modified) {
                        Ok(served) => {
                            state.current = Rc::new(served);
                            changed = Some(state.current.clone());
                        }
                        Err(e) => eprintln!("ferry: cannot build the summary: {e}"),
                    }
                }
                Ok(_) => {}
                Err(e) => eprintln!("ferry: cannot list the refs to serve: {e}"),
            }
            (std::mem::take(&mut state.waiting), state.current.clone())
        };
        for waiting in waiting {
            if !waiting.request.done.get() && !self.stopped.get() {
                self.respond_summary(&waiting.msg, &current, waiting.signature, waiting.head);
                waiting.msg.unpause();
            }
        }
        if let Some(summary) = changed {
            for listener in self.summary_listeners.borrow().iter() {
                listener(&summary);
            }
        }
    }

    pub(super) fn serve_file(
        &self,
        msg: &soup::ServerMessage,
        relative: &str,
        kind: FileKind,
        head: bool,
    ) {
        let file = match open_beneath(&self.root_fd, relative, kind.follows_symlinks()) {
            Ok(file) => file,
            Err(e)
                if e.raw_os_error() == Some(libc::EMFILE)
                    || e.raw_os_error() == Some(libc::ENFILE) =>
            {
                self.bump(|s| s.busy += 1);
                set_status(msg, 503);
                return;
            }
            Err(_) => return self.not_found(msg),
        };
        let Ok(meta) = file.metadata() else {
            return self.not_found(msg);
        };
        if !meta.file_type().is_file() {
            return self.not_found(msg);
        }
        let etag = format!(
            "\"{:x}-{:x}-{:x}.{:x}\"",
            meta.ino(),
            meta.size(),
            meta.mtime(),
            meta.mtime_nsec()
        );
        let last_modified = u64::try_from(meta.mtime()).unwrap_or(0);
        if head || self.is_not_modified(msg, &etag, last_modified) {
            // No body: the length is what a GET would send.
            return self.respond_headers(msg, meta.size(), &etag, last_modified, head);
        }
        match map_file(&file, meta.size()) {
            Ok(data) => self.respond(msg, data, &etag, last_modified, false),
            Err(_) => {
                set_status(msg, 500);
            }
        }
    }

    pub(super) fn is_not_modified(
        &self,
        msg: &soup::ServerMessage,
        etag: &str,
        last_modified: u64,
    ) -> bool {
        let Some(headers) = msg.request_headers() else {
            return false;
        };
        let if_none_match = headers.one("If-None-Match");
        let if_modified_since = headers
            .one("If-Modified-Since")
            .and_then(|date| soup::date_time_new_from_http_string(&date))
            .and_then(|date| u64::try_from(date.to_unix()).ok());
        not_modified(
            if_none_match.as_deref(),
            if_modified_since,
            etag,
            last_modified,
        )
    }

    pub(super) fn set_validators(msg: &soup::ServerMessage, etag: &str, last_modified: u64) {
        if let Some(headers) = msg.response_headers() {
            headers.replace("ETag", etag);
            if let Some(date) = glib::DateTime::from_unix_utc(last_modified as i64)
                .ok()
                .and_then(|d| soup::date_time_to_string(&d, soup::DateFormat::Http))
            {
                headers.replace("Last-Modified", &date);
            }
        }
    }

    /// Headers only: a HEAD, or a 304 when the client's copy is current.
    pub(super) fn respond_headers(
        &self,
        msg: &soup::ServerMessage,
        len: u64,
        etag: &str,
        last_modified: u64,
        head: bool,
    ) {
        Self::set_validators(msg, etag, last_modified);
        if head && !self.is_not_modified(msg, etag, last_modified) {
            set_status(msg, 200);
            if let Some(headers) = msg.response_headers() {
                headers.replace("Content-Type", "application/octet-stream");
                headers.set_content_length(len as i64);
            }
        } else {
            self.bump(|s| s.not_modified += 1);
            set_status(msg, 304);
        }
    }

    pub(super) fn respond(
        &self,
        msg: &soup::ServerMessage,
        data: glib::Bytes,
        etag: &str,
        last_modified: u64,
        head: bool,
    ) {
        if head || self.is_not_modified(msg, etag, last_modified) {
            return self.respond_headers(msg, data.len() as u64, etag, last_modified, head);
        }
        Self::set_validators(msg, etag, last_modified);
        set_status(msg, 200);
        if let Some(headers) = msg.response_headers() {
            headers.replace("Content-Type", "application/octet-stream");
            headers.set_encoding(soup::Encoding::ContentLength);
            headers.set_content_length(data.len() as i64);
        }
        send_body(msg, data, self.upload_cap.as_deref());
    }
}

/// RFC 9110 §13.2.2: If-None-Match decides when present; otherwise
/// If-Modified-Since (whole seconds).
pub fn not_modified(
    if_none_match: Option<&str>,
    if_modified_since: Option<u64>,
    etag: &str,
    last_modified: u64,
) -> bool {
    if let Some(list) = if_none_match {
        let ours = etag.trim_start_matches("W/");
        return list
            .split(',')
            .map(str::trim)
            .any(|tag| tag == "*" || tag.trim_start_matches("W/") == ours);
    }
    if_modified_since.is_some_and(|since| last_modified <= since)
}

pub(super) fn open_directory(path: &Path) -> io::Result<OwnedFd> {
    let c_path = CString::new(path.as_os_str().as_bytes()).map_err(io::Error::other)?;
    // SAFETY: a NUL-terminated path; the fd is owned by the returned OwnedFd.
    let fd = unsafe {
        libc::open(
            c_path.as_ptr(),
            libc::O_PATH | libc::O_DIRECTORY | libc::O_CLOEXEC,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fd was just opened and is owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Opens `relative` (a whitelisted path) for reading, never leaving `dir`.
/// `follow`: symlinks may be followed while they stay beneath `dir` (ref aliases);
/// otherwise any symlink on the way is refused.
pub fn open_beneath(dir: &OwnedFd, relative: &str, follow: bool) -> io::Result<File> {
    // O_NONBLOCK: a FIFO planted under an object's name cannot hang the server.
    let mut flags = libc::O_RDONLY | libc::O_NONBLOCK;
    let mut resolve = libc::RESOLVE_BENEATH | libc::RESOLVE_NO_MAGICLINKS;
    if !follow {
        flags |= libc::O_NOFOLLOW;
        resolve |= libc::RESOLVE_NO_SYMLINKS;
    }
    match beneath::openat2(dir, Path::new(relative), flags, resolve) {
        // No openat2 (old kernel, or a seccomp filter): walk without any symlink.
        Err(e) if matches!(e.raw_os_error(), Some(libc::ENOSYS) | Some(libc::EPERM)) => {
            open_without_symlinks(dir, relative, flags | libc::O_CLOEXEC | libc::O_NOCTTY)
        }
        result => result,
    }
}

pub(super) fn open_without_symlinks(
    dir: &OwnedFd,
    relative: &str,
    flags: libc::c_int,
) -> io::Result<File> {
    let components: Vec<&str> = relative.split('/').collect();
    let mut current: Option<OwnedFd> = None;
    for (i, component) in components.iter().enumerate() {
        if component.is_empty() || *component == "." || *component == ".." {
            return Err(io::Error::from_raw_os_error(libc::ENOENT));
        }
        let name = CString::new(*component).map_err(io::Error::other)?;
        let last = i + 1 == components.len();
        let at = current
            .as_ref()
            .map_or(dir.as_raw_fd(), |fd| fd.as_raw_fd());
        let open_flags = if last {
            flags | libc::O_NOFOLLOW
        } else {
            libc::O_PATH | libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC
        };
        // SAFETY: valid dirfd and NUL-terminated name.
        let fd = unsafe { libc::openat(at, name.as_ptr(), open_flags) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: a new fd, owned here.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        if last {
            return Ok(File::from(fd));
        }
        current = Some(fd);
    }
    Err(io::Error::from_raw_os_error(libc::ENOENT))
}
