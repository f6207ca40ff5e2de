#!/usr/bin/env node
// webtune-coordinator: the reference coordinator's command line (see the package README).
// Usage: webtune-coordinator --db ./coordinator.sqlite --port 8787 --initial-adapter adapter.safetensors \
//          [--enrolment-secret S | WEBTUNE_ENROLMENT_SECRET=S] [--config round-config.json]
import '../dist/cli.js';
