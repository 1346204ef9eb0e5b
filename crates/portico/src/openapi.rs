//! `portico openapi`: writes each gateway's OpenAPI document to `openapi/`, or with `--check`
//! fails when the checked-in copies have drifted from what the gateways serve.

use portico::{Error, gateways::Gateway};

use crate::cli::OpenapiArgs;

pub fn run(args: &OpenapiArgs) -> Result<(), Error> {
    let mut drifted = Vec::new();
    for gateway in Gateway::ALL {
        let path = args.out.join(format!("{}.json", gateway.name()));
        let document = format!("{}\n", gateway.openapi_json());
        if args.check {
            if std::fs::read_to_string(&path).ok().as_deref() != Some(document.as_str()) {
                drifted.push(path.display().to_string());
            }
        } else {
            std::fs::create_dir_all(&args.out)?;
            std::fs::write(&path, document).map_err(|e| format!("{}: {e}", path.display()))?;
            eprintln!("wrote {}", path.display());
        }
    }
    if drifted.is_empty() {
        Ok(())
    } else {
        Err(format!("out of date: {}; run `cargo run -- openapi` and commit", drifted.join(", "))
            .into())
    }
}
