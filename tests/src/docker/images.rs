//! The demo's two images, built from the repository's Dockerfile around
//! statically linked binaries, once per test process.

use super::{docker, docker_result, run, unique_name, MAX_IMAGE_BYTES};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex, Weak};

/// The two images (`relay-svc` and `chat-node`) built from the repository's
/// Dockerfile; removed when the last holder drops them.
pub struct Images {
    /// The relay-svc image tag.
    pub relay: String,
    /// The chat-node image tag.
    pub node: String,
}

/// The images this process built and still uses. Building and removing
/// happen under this lock, so a test that starts while another removes the
/// images builds new ones under new tags.
static IMAGES: Mutex<Weak<Images>> = Mutex::new(Weak::new());

impl Images {
    /// The images, built once for every test of this process that runs
    /// while another still holds them.
    pub fn shared() -> Arc<Images> {
        let mut slot = IMAGES.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(images) = slot.upgrade() {
            return images;
        }
        let images = Arc::new(build_images(&unique_name("img")));
        *slot = Arc::downgrade(&images);
        images
    }
}

impl Drop for Images {
    fn drop(&mut self) {
        let _lock = IMAGES.lock().unwrap_or_else(|p| p.into_inner());
        for image in [&self.relay, &self.node] {
            if !image.is_empty() {
                let _ = docker_result(&["rmi", image]);
            }
        }
    }
}

/// Builds the static binaries as `scripts/demo-up.sh` does and the two
/// images from the repository's Dockerfile, tagged under `prefix`; checks
/// their size.
fn build_images(prefix: &str) -> Images {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root");
    let target_dir = target_dir();
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let version = run(Command::new(rustc).arg("-vV"));
    let triple = version
        .lines()
        .find_map(|l| l.strip_prefix("host: "))
        .expect("rustc -vV names the host triple");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    // Its progress and errors go straight to the terminal.
    let status = Command::new(cargo)
        .current_dir(root)
        .env("RUSTFLAGS", "-C target-feature=+crt-static")
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .args(["build", "--release", "--locked", "--target", triple])
        .args([
            "-p",
            "relay-svc",
            "-p",
            "chat-node",
            "--bins",
            "--target-dir",
        ])
        .arg(&target_dir)
        .status()
        .expect("run cargo build");
    assert!(status.success(), "building the static binaries failed");
    // A build context of our own, laid out as the Dockerfile expects.
    let context = target_dir.join(prefix);
    let staged = context.join("target/docker");
    std::fs::create_dir_all(staged.join("data")).expect("create the build context");
    std::fs::write(staged.join("data/.keep"), b"").expect("create the data directory");
    // Nodes read the relay's ca.pem in its /data: 0755 whatever the umask.
    let data_mode = std::os::unix::fs::PermissionsExt::from_mode(0o755);
    std::fs::set_permissions(staged.join("data"), data_mode).expect("chmod the data directory");
    std::fs::copy(root.join("Dockerfile"), context.join("Dockerfile")).expect("copy Dockerfile");
    // Filled in as each image is built, so that a failure removes what was.
    let mut images = Images {
        relay: String::new(),
        node: String::new(),
    };
    for bin in ["relay-svc", "chat-node"] {
        let built = target_dir.join(triple).join("release").join(bin);
        run(Command::new("strip")
            .arg("--strip-debug")
            .arg("-o")
            .arg(staged.join(bin))
            .arg(&built));
        let image = format!("{prefix}/{bin}:test");
        let context = context.to_string_lossy();
        docker(&["build", "--quiet", "--target", bin, "-t", &image, &context]);
        if bin == "relay-svc" {
            images.relay = image.clone();
        } else {
            images.node = image.clone();
        }
        let size: u64 = docker(&["image", "inspect", "-f", "{{.Size}}", &image])
            .trim()
            .parse()
            .expect("image size");
        assert!(size < MAX_IMAGE_BYTES, "{image} is {size} bytes");
    }
    let _ = std::fs::remove_dir_all(&context);
    images
}

/// The target directory this test was built in: target/debug/deps/<test>.
fn target_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    exe.ancestors()
        .nth(3)
        .expect("target directory above the test executable")
        .to_path_buf()
}
