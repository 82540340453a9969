using System.CommandLine;

namespace Appliance.Cli.Commands;

/// <summary>
/// `appliance parts`: what this build contains, part by part (the folders of DESIGN.md), and which commands reach
/// each. Keep this table true when a part gains code or commands.
/// </summary>
public static class PartsCommand
{
    public sealed record Part(string Name, string Folder, string State, string Commands);

    public static readonly IReadOnlyList<Part> Parts =
    [
        new("platform", "node/Platform", "ready: native calls (O_DIRECT, AIO, fdatasync, ioctl, mount, flock, statvfs) and devices (file/block, memory, fault-injecting)", "device info, device create"),
        new("crush", "crush", "ready: CRUSH maps in Ceph's text format, bit-exact mapping (straw2, straw, list, tree, uniform), pool placement", "crush test, crush analyze"),
        new("store", "node/Store", "in progress: object store on a raw disk (superblocks, group-commit journal, checkpoints, crc32c per 4 KiB, fsck), crash-tested; speed below target", "store mkfs|fsck|stat|put|get|ls|rm|bench"),
        new("wire", "node/Wire", "in progress: frames (crc, AES-GCM secure), sessions that survive cuts and peer restarts, mutual auth, tickets, capabilities; speed below target", "-"),
        new("paxos", "node/Paxos", "ready: Multi-Paxos log (leases, batching, catch-up, trimming, single-member changes), checked in a seeded fault simulator", "-"),
        new("maps", "node/Maps", "ready: monmap/osdmap (pg_temp, primary_temp, blocklist, up_thru, PG placement), the monitor protocol, MonClient (subscriptions that follow the monmap, past osdmaps)", "-"),
        new("monitor", "node/Monitor", "in progress: monitor daemon (Paxos over the messenger, durable store), monmap/osdmap/auth/config/audit, leader-lease reads, map subscriptions, osd create, PG statistics and df in the leader's memory", "mon bootstrap|run|status|add|rm, status, pool, osd tree|out|in|watch|blocklist, pg ls, df, auth, audit, config, bootstrap, join-token, join, node ls|rm"),
        new("osd", "node/Osd", "in progress: the OSD daemon; placement groups with PG logs, replication, peering, recovery, backfill, method classes, watch/notify; erasure coding and scrub planned", "osd create|run, cluster up|down, disk add|ls|rm"),
        new("client", "node/Client", "in progress: the cluster client (osdmap subscription, requests to PG primaries resent with one tid under newer maps, deadlines, typed errors, watches, listing)", "object put|get|stat|ls|rm|bench, cluster up (its probe of every PG)"),
        new("blockdev", "blockdev", "in progress: the NBD server (fixed newstyle, structured replies, base:allocation, TLS, multi-conn) over local sparse images; cluster images are planned", "nbd serve, image create|ls|rm|resize|info"),
        new("fs", "fs", "in progress: our own FUSE kernel protocol over /dev/fuse; the cluster filesystem (metadata in one PG through the fsmeta class, data striped in a pool); no cross-mount invalidations, locks or leases yet", "fs create|ls|rm|mount|umount"),
        new("packaging", "packaging", "planned: .deb and systemd units", "-"),
        new("vagrant", "vagrant", "planned: a multi-VM test cluster", "-"),
    ];

    public static Command Create()
    {
        var command = new Command("parts", "Show the parts of this build and what state each is in.");
        command.SetAction(parse =>
        {
            var output = parse.InvocationConfiguration.Output;
            var version = typeof(PartsCommand).Assembly.GetName().Version;
            output.WriteLine($"appliance {version?.ToString(3)}");
            var width = Parts.Max(p => p.Name.Length);
            var folderWidth = Parts.Max(p => p.Folder.Length);
            foreach (var part in Parts)
            {
                output.WriteLine($"  {part.Name.PadRight(width)}  {part.Folder.PadRight(folderWidth)}  {part.State}");
                if (part.Commands != "-")
                {
                    output.WriteLine($"  {new string(' ', width + folderWidth + 2)}  commands: {part.Commands}");
                }
            }
            return 0;
        });
        return command;
    }
}
