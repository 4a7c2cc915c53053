//! A growable buffer shared with a second process:
//! `cargo run --release -p cuda-vmm-alloc --example shared_buffer`.
//!
//! The producer (this process) listens on a Unix socket in a temporary directory and starts
//! itself again as the consumer. It appends a log of `u64` records to a [`GrowableBuffer`]
//! in rounds, each crossing into new chunks, and publishes after each round: one message
//! carrying the new chunks' descriptors. The consumer maps them at its own reservation as
//! they arrive, checks every record of the published length, and acknowledges. Runs on the
//! GPU when the driver finds one, otherwise on the simulator in both processes (set
//! `CUDA_VMM_BACKEND=sim` to force it).

use std::error::Error;
use std::io::{ErrorKind, Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use cuda_vmm::{AllocationProps, Cuda, Device, HandleTypes};
use cuda_vmm_alloc::{
    BufferConfig, GrowableBuffer, GrowthPolicy, SharedBufferConsumer, SharedBufferProducer,
};

/// Records appended per round.
const ROUNDS: usize = 6;
/// How long either side waits for the other.
const TIMEOUT: Duration = Duration::from_secs(60);

/// Record `i` of the log: its index and a checksum-like tag the consumer recomputes.
fn record(i: usize) -> u64 {
    let i = i as u64;
    (i << 20) ^ i.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 44
}

fn main() -> Result<(), Box<dyn Error>> {
    let mut args = std::env::args().skip(1);
    match (args.next().as_deref(), args.next()) {
        (Some("consumer"), Some(path)) => consumer(Path::new(&path)),
        _ => producer(),
    }
}

fn device() -> Result<(Cuda, Device), Box<dyn Error>> {
    let cuda = Cuda::new()?;
    let device = cuda.device(0)?;
    Ok((cuda, device))
}

fn producer() -> Result<(), Box<dyn Error>> {
    let (cuda, device) = device()?;
    println!("producer: {}", cuda.describe());
    let dir = TempDir::new()?;
    let path = dir.0.join("socket");
    let listener = UnixListener::bind(&path)?;
    listener.set_nonblocking(true)?;
    let mut child = Command::new(std::env::current_exe()?)
        .arg("consumer")
        .arg(&path)
        .spawn()?;
    let stream = accept(&listener, &mut child)?;

    let props = AllocationProps::device(&device).handle_types(HandleTypes::POSIX_FD);
    let chunk = device.min_granularity(&props)?;
    let per_round = chunk / 8 + 1000; // each round crosses into a new chunk
    let mut log: GrowableBuffer<u64> = GrowableBuffer::new(
        &device,
        BufferConfig {
            max_capacity: Some(ROUNDS * per_round * 2),
            policy: GrowthPolicy::fixed(chunk),
            props: Some(props),
            ..BufferConfig::default()
        },
    )?;
    let mut shared = SharedBufferProducer::new(&log, stream.try_clone()?)?;
    for round in 0..ROUNDS {
        let start = log.len();
        let records: Vec<u64> = (start..start + per_round).map(record).collect();
        // Synchronous: complete when it returns, so publish may send at once.
        log.extend_from_slice(&records)?;
        let start_publish = Instant::now();
        let chunks = shared.publish(&log)?;
        let sent = start_publish.elapsed();
        wait_ack(&stream)?;
        println!(
            "producer: round {round}: {} records, {} MiB committed, {chunks} new chunk(s) \
             sent in {sent:.1?}",
            log.len(),
            log.committed_bytes() >> 20,
        );
    }
    // Closing the stream ends the protocol; the consumer's `receive` answers false.
    drop(shared);
    drop(stream);
    let status = child.wait()?;
    if !status.success() {
        return Err(format!("the consumer failed: {status}").into());
    }
    println!(
        "producer: the consumer saw all {} records of {} updates",
        log.len(),
        ROUNDS
    );
    Ok(())
}

fn consumer(path: &Path) -> Result<(), Box<dyn Error>> {
    let (cuda, device) = device()?;
    println!("consumer: {}", cuda.describe());
    let stream = UnixStream::connect(path)?;
    stream.set_read_timeout(Some(TIMEOUT))?;
    let mut log = SharedBufferConsumer::<u64>::connect(&device, stream.try_clone()?)?;
    let mut updates = 0;
    while log.receive()? {
        updates += 1;
        let seen = log.to_vec()?;
        if let Some(i) = (0..seen.len()).find(|&i| seen[i] != record(i)) {
            return Err(format!("update {updates}: record {i} is {:#x}", seen[i]).into());
        }
        println!(
            "consumer: update {updates} (generation {}): {} records checked, {} MiB mapped",
            log.generation(),
            log.len(),
            log.committed_bytes() >> 20
        );
        (&stream).write_all(&[1])?;
    }
    if updates != ROUNDS {
        return Err(format!("{updates} updates arrived, {ROUNDS} were sent").into());
    }
    Ok(())
}

/// Accepts the consumer's connection, or fails if it exits or never connects.
fn accept(listener: &UnixListener, child: &mut Child) -> Result<UnixStream, Box<dyn Error>> {
    let start = Instant::now();
    loop {
        match listener.accept() {
            Ok((stream, _)) => {
                stream.set_nonblocking(false)?;
                stream.set_read_timeout(Some(TIMEOUT))?;
                return Ok(stream);
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => {
                if let Some(status) = child.try_wait()? {
                    return Err(format!("the consumer exited before connecting: {status}").into());
                }
                if start.elapsed() > TIMEOUT {
                    child.kill()?;
                    return Err("the consumer never connected".into());
                }
                std::thread::sleep(Duration::from_millis(5));
            }
            Err(e) => return Err(e.into()),
        }
    }
}

fn wait_ack(mut stream: &UnixStream) -> std::io::Result<()> {
    let mut byte = [0u8; 1];
    stream.read_exact(&mut byte)
}

/// A fresh temporary directory, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> std::io::Result<TempDir> {
        let dir =
            std::env::temp_dir().join(format!("cuda-vmm-shared-buffer-{}", std::process::id()));
        std::fs::create_dir_all(&dir)?;
        Ok(TempDir(dir))
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
