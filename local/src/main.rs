//! `cargo run -p handover-local`: the whole service on one local port.

use handover_core::config::{Env, LocalConfig};
use handover_core::telemetry;
use handover_local::start;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    telemetry::init();
    let env = Env::from_process();
    let addr = env.string_or("HANDOVER_LOCAL_ADDR", LocalConfig::DEFAULT_ADDR);
    let listener = tokio::net::TcpListener::bind(&addr)
        .await
        .map_err(|e| format!("cannot listen on {addr} (HANDOVER_LOCAL_ADDR): {e}"))?;
    let running = start(listener, env.clone()).await?;
    // With HANDOVER_LOCAL_ADDR=127.0.0.1:0 the port is picked by the OS; scripts read it from here.
    if let Some(port_file) = env.optional("HANDOVER_LOCAL_PORT_FILE") {
        std::fs::write(port_file, running.addr.port().to_string())
            .map_err(|e| format!("cannot write HANDOVER_LOCAL_PORT_FILE {port_file}: {e}"))?;
    }
    if running.sandbox {
        eprintln!(
            "\n  !! SANDBOX MODE: CAIC_BASE_URL is not set, so a scripted bot and a fake MSC answer under\n  !! http://{0}/sandbox/ . Say \"agent\" to the bot to start a handover. Nothing reaches CM.com.\n",
            running.addr
        );
    }
    let store = env.string_or("HANDOVER_STORE", "memory");
    eprintln!(
        "  handover-local listening on http://{} (store: {store}; channel key: {})",
        running.addr,
        if env.optional("CHANNEL_API_KEY").is_some() {
            "from CHANNEL_API_KEY"
        } else {
            handover_local::LOCAL_CHANNEL_KEY
        }
    );
    tokio::select! {
        _ = tokio::signal::ctrl_c() => eprintln!("stopping"),
        result = running.task => result.map_err(|e| format!("server task failed: {e}"))?,
    }
    Ok(())
}
