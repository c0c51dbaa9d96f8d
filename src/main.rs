use std::process::ExitCode;

use anyhow::Context as _;
use clap::Parser as _;
use zcc_rtms::config::{Cli, Command, Config, ServeArgs};
use zcc_rtms::{App, shutdown_signal, telemetry, tls};

fn main() -> ExitCode {
    // A missing .env is normal; a malformed one is reported by the values it yields.
    let _ = dotenvy::dotenv();
    let cli = Cli::parse();
    tls::install_crypto_provider();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async move {
        match cli.command {
            None => serve(cli.serve).await,
            Some(Command::Serve(args)) => serve(args).await,
            Some(Command::Simulate(args)) => simulate(args).await,
            Some(Command::Doctor(args)) => doctor(args).await,
            Some(Command::Healthcheck(args)) => healthcheck(args).await,
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}

async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let config = Config::from_args(&args).context("configuration")?;
    telemetry::init(config.log_format);
    let app = App::build(config).await?;
    app.run_until_stopped(shutdown_signal()).await
}

async fn simulate(args: zoom_sim::SimulateArgs) -> anyhow::Result<()> {
    telemetry::init(zcc_rtms::config::LogFormat::Pretty);
    zoom_sim::run_cli(args, shutdown_signal()).await
}

async fn healthcheck(args: zcc_rtms::config::HealthcheckArgs) -> anyhow::Result<()> {
    let port = args.port().context("configuration")?;
    let answer = zcc_rtms::doctor::probe_health(port)
        .await
        .map_err(anyhow::Error::msg)?;
    println!("{answer}");
    Ok(())
}

async fn doctor(args: ServeArgs) -> anyhow::Result<()> {
    let config = Config::from_args(&args).context("configuration")?;
    let checks = zcc_rtms::doctor::run(&config).await;
    for check in &checks {
        println!("{}", check.line());
    }
    let failed = checks
        .iter()
        .filter(|c| c.verdict == zcc_rtms::doctor::Verdict::Fail)
        .count();
    if failed > 0 {
        anyhow::bail!("{failed} check(s) failed");
    }
    Ok(())
}
