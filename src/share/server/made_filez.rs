//! Serving a `bare*` repository as if it were an archive one: a `.filez` request
//! is answered with the `.filez` made from the stored `.file` object as it is sent
//! ([`Repo::filez_stream`]). The object is opened on the main context (a few
//! system calls, as for any file served); the deflating runs on a worker thread,
//! which hands chunks over a bounded channel: the next chunk is appended only once
//! soup wrote the previous one, so at most a few chunks of an object are in memory
//! and a slow client slows the worker down. The length is not known up front, so
//! the body goes out chunked (`ostree pull` and Ferry both accept it).

use super::*;

use crate::repo::ObjectName;

/// Bytes the worker deflates and hands over at once.
const CHUNK: usize = 64 * 1024;
/// Chunks made ahead of what soup wrote.
const CHUNKS_AHEAD: usize = 2;

impl Inner {
    pub(super) fn serve_made_filez(
        self: &Rc<Self>,
        msg: &soup::ServerMessage,
        relative: &str,
        head: bool,
    ) {
        let Some(name) = ObjectName::from_relative_path(relative) else {
            return self.not_found(msg);
        };
        // The hardening of files served from disk: the object's directory is
        // reached beneath the repository without a symlink. The object itself is
        // never followed (a symlink object of a bare repository is read with
        // readlink, its content with O_NOFOLLOW).
        let hex = name.checksum.to_hex();
        if open_beneath(&self.root_fd, &format!("objects/{}", &hex[..2]), false).is_err() {
            return self.not_found(msg);
        }
        let Ok(meta) = std::fs::symlink_metadata(self.repo.object_path(&name)) else {
            return self.not_found(msg);
        };
        // Another ETag than the stored file's: this is another representation.
        let etag = format!(
            "\"z{:x}-{:x}-{:x}.{:x}\"",
            meta.ino(),
            meta.size(),
            meta.mtime(),
            meta.mtime_nsec()
        );
        let last_modified = u64::try_from(meta.mtime()).unwrap_or(0);
        if self.is_not_modified(msg, &etag, last_modified) {
            return self.respond_headers(msg, 0, &etag, last_modified, false);
        }
        let stream = match self.repo.filez_stream(&name) {
            Ok(stream) => stream,
            Err(crate::repo::RepoError::Io { source, .. })
                if matches!(source.raw_os_error(), Some(libc::EMFILE | libc::ENFILE)) =>
            {
                self.bump(|s| s.busy += 1);
                return set_status(msg, 503);
            }
            Err(_) => return self.not_found(msg),
        };
        Self::set_validators(msg, &etag, last_modified);
        set_status(msg, 200);
        if let Some(headers) = msg.response_headers() {
            headers.replace("Content-Type", "application/octet-stream");
            headers.set_encoding(soup::Encoding::Chunked);
        }
        if head {
            return;
        }
        send_stream(msg, stream, self.upload_cap.clone());
    }
}

/// Sends `stream` as `msg`'s chunked body, read on a worker thread, under the
/// server's bandwidth cap if it has one.
fn send_stream(
    msg: &soup::ServerMessage,
    mut stream: Box<dyn io::Read + Send>,
    upload_cap: Option<Rc<UploadCap>>,
) {
    let Some(body) = msg.response_body() else {
        return;
    };
    body.set_accumulate(false);
    let (chunks_tx, chunks_rx) = async_channel::bounded::<io::Result<Vec<u8>>>(CHUNKS_AHEAD);
    std::thread::spawn(move || loop {
        let mut chunk = vec![0u8; CHUNK];
        let result = read_chunk(&mut stream, &mut chunk).map(|n| {
            chunk.truncate(n);
            chunk
        });
        let last = !matches!(&result, Ok(chunk) if !chunk.is_empty());
        // A closed channel: the response ended early (client gone); stop.
        if chunks_tx.send_blocking(result).is_err() || last {
            return;
        }
    });
    // Each written chunk (or the end of the message) wakes the sender.
    let (written_tx, written_rx) = async_channel::unbounded::<()>();
    {
        let written_tx = written_tx.clone();
        msg.connect_wrote_chunk(move |_| {
            let _ = written_tx.try_send(());
        });
    }
    let end = move |_: &soup::ServerMessage| {
        written_tx.close();
    };
    msg.connect_finished(end.clone());
    msg.connect_disconnected(end);
    let weak = msg.downgrade();
    glib::spawn_future_local(async move {
        while let Ok(result) = chunks_rx.recv().await {
            let chunk = match result {
                Ok(chunk) => chunk,
                Err(e) => {
                    // Headers are gone: cut the connection so that the client sees
                    // a truncated body, never a short object taken as whole.
                    eprintln!("ferry: cannot make a .filez to serve: {e}");
                    if let Some(socket) = weak.upgrade().and_then(|msg| msg.socket()) {
                        let _ = socket.close();
                    }
                    return;
                }
            };
            if let Some(upload_cap) = upload_cap.as_ref().filter(|_| !chunk.is_empty()) {
                while let Some(wait) = upload_cap.try_take(chunk.len()) {
                    glib::timeout_future(wait).await;
                }
            }
            // The response ended (client gone): stop, which stops the worker.
            if written_rx.is_closed() {
                return;
            }
            let Some(msg) = weak.upgrade() else { return };
            let Some(body) = msg.response_body() else {
                return;
            };
            if chunk.is_empty() {
                body.complete();
                msg.unpause();
                return;
            }
            body.append_bytes(&glib::Bytes::from_owned(chunk));
            msg.unpause();
            drop((body, msg));
            if written_rx.recv().await.is_err() {
                return;
            }
        }
    });
}

/// Fills `buf` as far as the stream goes (a short chunk only at its end).
fn read_chunk(stream: &mut impl io::Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match stream.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_are_full_until_the_end() {
        // A reader returning a byte at a time still gives full chunks.
        struct Trickle(usize);
        impl io::Read for Trickle {
            fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
                if self.0 == 0 || buf.is_empty() {
                    return Ok(0);
                }
                self.0 -= 1;
                buf[0] = 7;
                Ok(1)
            }
        }
        let mut stream = Trickle(10);
        let mut buf = [0u8; 4];
        assert_eq!(read_chunk(&mut stream, &mut buf).unwrap(), 4);
        assert_eq!(read_chunk(&mut stream, &mut buf).unwrap(), 4);
        assert_eq!(read_chunk(&mut stream, &mut buf).unwrap(), 2);
        assert_eq!(read_chunk(&mut stream, &mut buf).unwrap(), 0);
    }
}
