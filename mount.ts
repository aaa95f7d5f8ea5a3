// The mount entry point: `node --import tsx mount.ts VOLUME MOUNTPOINT [options]` is the same as
// `hoardfs mount VOLUME MOUNTPOINT --foreground [options]`.
import { main } from './src/cli/main.ts';

await main(['mount', ...process.argv.slice(2), '--foreground']);
