using System.CommandLine;
using System.Diagnostics;
using System.Globalization;
using System.Net;
using System.Net.Sockets;
using System.Text;
using Appliance.BlockDev.Images;
using Appliance.BlockDev.Images.Cluster;
using Appliance.Cli.Common;
using Appliance.Client;
using Appliance.Fs.Cluster;
using Appliance.Maps;
using Appliance.Maps.Client;
using Appliance.Maps.Protocol;
using Appliance.Wire.Auth;

namespace Appliance.Cli.Commands;

/// <summary>
/// `cluster up|down`: a whole cluster on this machine from one data directory — three monitors on loopback ports,
/// OSDs on sparse files, a replicated pool `data` — run as background processes of this same program
/// (<see cref="LocalDaemons"/>). `up` makes what is missing, starts what is not running and returns once every PG
/// of the pool takes writes on all its copies; `down` stops exactly what `up` started.
/// </summary>
public static class ClusterCommands
{
    /// <summary>The pool `cluster up` makes.</summary>
    public const string PoolName = "data";

    /// <summary>The image `cluster up` makes (and its size), served with the others by the local NBD server.</summary>
    public const string ImageName = PoolName + "/disk0";
    public const long ImageSize = 4L << 30;

    /// <summary>The filesystem `cluster up` makes (pools fs0.meta and fs0.data) and mounts at DIR/mnt/fs0.</summary>
    public const string FsName = "fs0";

    private static readonly Option<string> Data = new("--data")
    {
        Description = "The cluster's directory: conf/ (cluster.conf and keyrings), run/ (pid files), log/, the monitors' stores and the OSDs' disk files.",
        Required = true,
    };

    public static Command Create()
    {
        var cluster = new Command("cluster", "A local cluster on this machine: monitors and OSDs as background processes, all under one directory.");
        cluster.Subcommands.Add(Up());
        cluster.Subcommands.Add(Down());
        return cluster;
    }

    private static Command Up()
    {
        var osds = new Option<int>("--osds") { Description = "How many OSDs (made the first time; more are added when the directory holds fewer). Default 3.", DefaultValueFactory = _ => 3 };
        var diskSize = new Option<string>("--disk-size") { Description = "Size of each OSD's sparse disk file, made the first time (e.g. 8G, 64M). Default 8G.", DefaultValueFactory = _ => "8G" };
        var timeout = new Option<double>("--timeout") { Description = "Seconds to wait for the cluster to take writes before saying which daemon is not up. Default 120.", DefaultValueFactory = _ => 120 };
        var noFs = new Option<bool>("--no-fs") { Description = $"Neither make nor mount filesystem {FsName} (a cluster of objects and images only)." };
        var up = new Command("up", $"Make a local cluster in --data the first time (3 monitors, N OSDs, a pool `data`, image {ImageName}, filesystem {FsName}), start whatever of it is not running (OSDs, monitors, the NBD server, the mount at DIR/mnt/{FsName}), and return once every PG takes writes.") { Data, osds, diskSize, timeout, noFs };
        up.SetAction(async (parse, ct) =>
        {
            var count = parse.GetValue(osds);
            if (count is < 1 or > 64)
            {
                throw new CliException(ExitCodes.Usage, $"--osds {count}: give 1 to 64 OSDs");
            }
            var bytes = ByteSize.Parse(parse.GetRequiredValue(diskSize), "--disk-size");
            var seconds = parse.GetValue(timeout);
            if (seconds is <= 0 or > 86400)
            {
                throw new CliException(ExitCodes.Usage, $"--timeout {seconds} is not a number of seconds between 0 and 86400");
            }
            var local = new LocalDaemons(Path.GetFullPath(parse.GetRequiredValue(Data)));
            var run = new ClusterUp(local, count, bytes, TimeSpan.FromSeconds(seconds), !parse.GetValue(noFs), parse.InvocationConfiguration.Output);
            await run.RunAsync(ct);
            return ExitCodes.Ok;
        });
        return up;
    }

    private static Command Down()
    {
        var purge = new Option<bool>("--purge") { Description = "Also delete the cluster's data: conf, monitors' stores, OSD disks, logs (needs --yes-i-really-mean-it)." };
        var really = new Option<bool>("--yes-i-really-mean-it") { Description = "Required with --purge: it destroys every object in the cluster." };
        var down = new Command("down", "Stop the daemons `cluster up` started from --data (mounts and the NBD server first, then OSDs, then monitors: SIGTERM, then SIGKILL after 15 s).") { Data, purge, really };
        down.SetAction(async (parse, ct) =>
        {
            var dir = Path.GetFullPath(parse.GetRequiredValue(Data));
            var local = new LocalDaemons(dir);
            var output = parse.InvocationConfiguration.Output;
            if (parse.GetValue(purge) && !parse.GetValue(really))
            {
                throw new CliException(ExitCodes.Refused, $"--purge deletes {dir} with every object of the cluster; add --yes-i-really-mean-it if that is what you want");
            }
            if (!File.Exists(Path.Combine(local.ConfDirectory, ClusterConf.FileName)) && !Directory.Exists(local.RunDirectory))
            {
                throw new CliException(ExitCodes.NotFound, $"{dir} holds no local cluster (no conf/{ClusterConf.FileName}, no run/); give the --data of `cluster up`");
            }
            foreach (var daemon in local.FromPidFiles())
            {
                await output.WriteLineAsync(await local.StopAsync(daemon, TimeSpan.FromSeconds(15), ct));
            }
            foreach (var line in local.DetachStaleMounts())
            {
                await output.WriteLineAsync(line);
            }
            if (parse.GetValue(purge))
            {
                Directory.Delete(dir, recursive: true);
                await output.WriteLineAsync($"deleted {dir}");
            }
            else
            {
                await output.WriteLineAsync($"stopped; the data stays in {dir} (`appliance cluster up --data {dir}` starts it again)");
            }
            return ExitCodes.Ok;
        });
        return down;
    }

    /// <summary>One run of `cluster up`.</summary>
    private sealed class ClusterUp(LocalDaemons local, int osdCount, long diskBytes, TimeSpan timeout, bool withFs, TextWriter output)
    {
        private readonly long _deadline = Stopwatch.GetTimestamp() + (long)(timeout.TotalSeconds * Stopwatch.Frequency);
        private readonly List<LocalDaemon> _daemons = [];
        /// <summary>Daemons started by this run, and how long their log was before.</summary>
        private readonly Dictionary<string, long> _logStarts = [];

        private TimeSpan Remaining => TimeSpan.FromSeconds(Math.Max(1, (double)(_deadline - Stopwatch.GetTimestamp()) / Stopwatch.Frequency));

        private bool Expired => Stopwatch.GetTimestamp() > _deadline;

        public async Task RunAsync(CancellationToken ct)
        {
            foreach (var d in new[] { local.DataDirectory, local.RunDirectory, local.LogDirectory })
            {
                Directory.CreateDirectory(d);
            }
            var conf = Define();
            foreach (var (name, _) in conf.Monitors)
            {
                await EnsureRunningAsync(local.Monitor(name));
            }

            var admin = Keyring.Load(Path.Combine(local.ConfDirectory, ClusterConf.AdminKeyringName)).Find("client.admin")
                ?? throw new CliException(ExitCodes.InvalidInput, $"{local.ConfDirectory}/{ClusterConf.AdminKeyringName} holds no key for client.admin");
            var ids = await MakeOsdsAsync(ct);
            foreach (var id in ids)
            {
                await EnsureRunningAsync(local.Osd(id));
            }

            var monitors = conf.Monitors.Select(m => IPEndPoint.Parse(m.Address)).ToList();
            ClusterClient client;
            try
            {
                client = await ClusterClient.ConnectAsync(monitors, admin.Entity, admin.Key,
                    new ClusterClientOptions { ConnectTimeout = Remaining, OpTimeout = Remaining }, ct);
            }
            catch (ClusterUnavailableException e)
            {
                throw NotUp($"the monitors gave no osdmap ({e.Message})");
            }
            await using (client)
            {
                var pool = await EnsurePoolAsync(client, monitors, admin, ids.Count, PoolName, null, ct);
                await WaitOsdsUpAsync(client, ids, ct);
                await ProbeEveryPgAsync(client, pool, ct);
                var map = client.OsdMap!;
                var info = map.FindPool(PoolName)!;
                await output.WriteLineAsync(
                    $"cluster {conf.Fsid} is up: {conf.Monitors.Count} monitors, {ids.Count} OSDs, pool '{PoolName}' ({info.Size} copies on distinct OSDs, min_size {info.MinSize}, {info.PgNum} PGs, every one taking writes)");
                await EnsureImageAsync(client, ct);
                if (withFs)
                {
                    await EnsureFilesystemAsync(client, monitors, admin, ids.Count, ct);
                }
            }
            var listen = await ServeImagesAsync(ct);
            var mounted = withFs && await MountAsync(ct);
            var files = !withFs ? "" : mounted
                ? $"""
                  Files: filesystem {FsName} mounted at {local.MountPoint(FsName)} (another mount: appliance fs mount {FsName} DIR)
                    echo hello > {local.MountPoint(FsName)}/hello.txt

                  """
                : $"""
                  Files: filesystem {FsName} is not mounted (see above); mount it with: appliance fs mount {FsName} DIR

                  """;
            var dir = local.DataDirectory;
            await output.WriteLineAsync($"""

                Use it:
                  export APPLIANCE_CONF_DIR={local.ConfDirectory}    (or give --conf-dir {local.ConfDirectory} to any command)
                  appliance status
                  appliance osd tree
                  appliance pool ls
                  appliance image ls
                Block devices: the cluster's images over NBD (image {ImageName}, {ByteSize.Format(ImageSize)}):
                  nbdinfo 'nbd+unix:///{ImageName}?socket={local.NbdSocket}'
                  qemu-io -f raw 'nbd://{listen}/{ImageName}' -c 'write -P 0x5a 0 1M' -c 'read -P 0x5a 0 1M'
                  nbd-client -unix {local.NbdSocket} /dev/nbd0 -name {ImageName}      (the kernel's client, as root; or -N {ImageName} 127.0.0.1 {listen.Split(':')[^1]})
                  qemu-system-x86_64 ... -drive driver=nbd,server.type=unix,server.path={local.NbdSocket},export={ImageName},reconnect-delay=30
                {files}Logs are in {local.LogDirectory}, pid files in {local.RunDirectory}.
                Stop it with:   appliance cluster down --data {dir}
                Delete it with: appliance cluster down --data {dir} --purge --yes-i-really-mean-it
                """);
        }

        /// <summary>Makes image data/disk0 the first time.</summary>
        private async Task EnsureImageAsync(ClusterClient client, CancellationToken ct)
        {
            // Creating needs no lock, hence no fencing: a store whose fence refuses.
            var store = new ClusterImageStore(client, new ClusterImageOptions
            {
                Identity = new LockIdentity(client.Entity, $"{client.Entity}:{client.Nonce}", Environment.MachineName, "cluster up"),
                Fence = (_, _) => throw new InvalidOperationException("cluster up takes no image lock"),
            });
            try
            {
                await store.InfoAsync(ImageName, ct);
            }
            catch (ImageCatalogException e) when (e.Error == ImageCatalogError.NotFound)
            {
                var made = await store.CreateAsync(ImageName, ImageSize, ct: ct);
                await output.WriteLineAsync($"image {ImageName} created: {ByteSize.Format(ImageSize)}, thin-provisioned, id {made.Header.Id}");
            }
        }

        /// <summary>Makes filesystem fs0 the first time: pools fs0.meta (8 PGs: a filesystem's metadata lives in one
        /// PG) and fs0.data (32 PGs), as many copies as the pool `data`.</summary>
        private async Task EnsureFilesystemAsync(ClusterClient client, IReadOnlyList<IPEndPoint> monitors, KeyringEntry admin, int osds, CancellationToken ct)
        {
            if (await FsRegistry.FindAsync(client, FsName, ct) is not null)
            {
                return;
            }
            var meta = await EnsurePoolAsync(client, monitors, admin, osds, FsName + ".meta", 8, ct);
            var data = await EnsurePoolAsync(client, monitors, admin, osds, FsName + ".data", 32, ct);
            // A create of ours that committed before an error is found again by the FindAsync above next time.
            if (await FsRegistry.CreateAsync(client, new FsRecord(FsName, meta.Name, data.Name, DataStriper.DefaultStripe), Remaining, ct))
            {
                await output.WriteLineAsync($"filesystem {FsName} created (metadata in pool {meta.Name}, data in pool {data.Name})");
            }
        }

        /// <summary>Mounts fs0 at DIR/mnt/fs0 through a background `fs mount --foreground` unless it is mounted, and
        /// waits until it is. A mount that cannot be made (no FUSE here) is said, not fatal: the cluster is up.</summary>
        private async Task<bool> MountAsync(CancellationToken ct)
        {
            var path = local.MountPoint(FsName);
            var daemon = local.Fs(FsName);
            var running = local.RunningPid(daemon) is not null;
            if (LocalDaemons.IsMounted(path) && !running)
            {
                foreach (var line in local.DetachStaleMounts())
                {
                    await output.WriteLineAsync(line);
                }
            }
            Directory.CreateDirectory(path);
            await EnsureRunningAsync(daemon);
            var pid = File.ReadAllText(local.PidFile(daemon.Name)).Trim();
            while (!LocalDaemons.IsMounted(path))
            {
                if (!Directory.Exists($"/proc/{pid}") || Expired)
                {
                    _daemons.Remove(daemon);
                    await output.WriteLineAsync(
                        $"fs: {FsName} is NOT mounted at {path} (FUSE needs /dev/fuse, and root or fusermount3 from package fuse3); the end of {local.LogFile(daemon.Name)}:{local.LogTail(daemon.Name)}");
                    if (Directory.Exists($"/proc/{pid}"))
                    {
                        await output.WriteLineAsync(await local.StopAsync(daemon, TimeSpan.FromSeconds(5), ct));
                    }
                    return false;
                }
                await Task.Delay(50, ct);
            }
            await output.WriteLineAsync($"fs: filesystem {FsName} mounted at {path}");
            return true;
        }

        /// <summary>Starts the NBD server if it is not running (on the loopback port chosen the first time) and waits
        /// until it serves; returns its TCP address.</summary>
        private async Task<string> ServeImagesAsync(CancellationToken ct)
        {
            if (!File.Exists(local.NbdListenFile))
            {
                File.WriteAllText(local.NbdListenFile, $"127.0.0.1:{FreeLoopbackPorts(1)[0].ToString(CultureInfo.InvariantCulture)}\n");
            }
            var listen = File.ReadAllText(local.NbdListenFile).Trim();
            var daemon = local.Nbd(listen);
            await EnsureRunningAsync(daemon);
            if (_logStarts.TryGetValue(daemon.Name, out var from))
            {
                // Started by this run: until it says it serves on both (or it exited, or time is up). Its pid is
                // watched in /proc rather than by its command line, which is setsid's until it execs.
                var pid = File.ReadAllText(local.PidFile(daemon.Name)).Trim();
                while (ServingLines(daemon.Name, from) < 2)
                {
                    if (!Directory.Exists($"/proc/{pid}"))
                    {
                        throw new CliException(ExitCodes.Failure, $"the NBD server exited; the end of its log {local.LogFile(daemon.Name)}:{local.LogTail(daemon.Name)}");
                    }
                    if (Expired)
                    {
                        throw NotUp($"the NBD server does not serve (log {local.LogFile(daemon.Name)}){local.LogTail(daemon.Name)}");
                    }
                    await Task.Delay(100, ct);
                }
            }
            await output.WriteLineAsync($"nbd: the cluster's images served on unix:{local.NbdSocket} and {listen} (export names POOL/IMAGE)");
            return listen;
        }

        private int ServingLines(string name, long from)
        {
            try
            {
                using var f = new FileStream(local.LogFile(name), FileMode.Open, FileAccess.Read, FileShare.ReadWrite);
                f.Seek(Math.Min(from, f.Length), SeekOrigin.Begin);
                using var reader = new StreamReader(f);
                var n = 0;
                while (reader.ReadLine() is { } line)
                {
                    n += line.StartsWith("nbd: serving ", StringComparison.Ordinal) ? 1 : 0;
                }
                return n;
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException)
            {
                return 0;
            }
        }

        /// <summary>The first time, what `mon bootstrap` does with three monitors on free loopback ports.</summary>
        private ClusterConf Define()
        {
            var confFile = Path.Combine(local.ConfDirectory, ClusterConf.FileName);
            if (!File.Exists(confFile))
            {
                // A port free now may be taken before the monitor binds it; that monitor then fails to start and
                // the wait below names it and its log (run `cluster down --purge` and `up` again).
                var mons = new[] { "a", "b", "c" }.Zip(FreeLoopbackPorts(3), (n, p) => (n, $"127.0.0.1:{p.ToString(CultureInfo.InvariantCulture)}")).ToList();
                var made = ClusterConf.Bootstrap(local.ConfDirectory, mons, DateTimeOffset.UtcNow);
                output.WriteLine($"cluster {made.Fsid} defined in {local.ConfDirectory}: monitors {string.Join(", ", mons.Select(m => $"{m.n} at {m.Item2}"))}");
            }
            try
            {
                return ClusterConf.Load(local.ConfDirectory);
            }
            catch (FormatException e)
            {
                throw new CliException(ExitCodes.InvalidInput, e.Message);
            }
        }

        private static List<int> FreeLoopbackPorts(int n)
        {
            // All bound at once, so the n ports differ.
            var sockets = Enumerable.Range(0, n).Select(_ => new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp)).ToList();
            try
            {
                foreach (var s in sockets)
                {
                    s.Bind(new IPEndPoint(IPAddress.Loopback, 0));
                }
                return [.. sockets.Select(s => ((IPEndPoint)s.LocalEndPoint!).Port)];
            }
            finally
            {
                sockets.ForEach(s => s.Dispose());
            }
        }

        private async Task EnsureRunningAsync(LocalDaemon daemon)
        {
            _daemons.Add(daemon);
            if (local.RunningPid(daemon) is { } pid)
            {
                await output.WriteLineAsync($"{daemon.Name} is running (pid {pid})");
                return;
            }
            _logStarts[daemon.Name] = File.Exists(local.LogFile(daemon.Name)) ? new FileInfo(local.LogFile(daemon.Name)).Length : 0;
            pid = local.Start(daemon);
            await output.WriteLineAsync($"{daemon.Name} started (pid {pid}, log {local.LogFile(daemon.Name)})");
        }

        /// <summary>The OSDs of the directory, with new ones made by `osd create` (run in this process) until there
        /// are <c>osdCount</c>. A disk is made as osd.new.disk and renamed once the monitors gave it its id.</summary>
        private async Task<List<int>> MakeOsdsAsync(CancellationToken ct)
        {
            var ids = local.OsdIds().ToList();
            var pending = Path.Combine(local.DataDirectory, "osd.new.disk");
            // Left by an interrupted create: its id (if the monitors gave one) never booted and holds nothing.
            File.Delete(pending);
            while (ids.Count < osdCount)
            {
                var stdout = new StringWriter();
                var stderr = new StringWriter();
                var code = await CliApp.RunAsync(
                    ["osd", "create", "--data", pending, "--size", diskBytes.ToString(CultureInfo.InvariantCulture), "--conf-dir", local.ConfDirectory,
                     "--timeout", ((int)Math.Ceiling(Remaining.TotalSeconds)).ToString(CultureInfo.InvariantCulture)],
                    stdout, stderr, ct);
                if (code != ExitCodes.Ok || !int.TryParse(stdout.ToString().Trim(), NumberStyles.None, CultureInfo.InvariantCulture, out var id))
                {
                    File.Delete(pending);
                    throw code == ExitCodes.Ok
                        ? new CliException(ExitCodes.Failure, $"osd create printed no id: {stdout}")
                        : NotUp($"could not create an OSD: {stderr.ToString().Trim()}", code);
                }
                File.Move(pending, local.OsdDisk(id));
                ids.Add(id);
                await output.WriteLineAsync($"osd.{id} created on {local.OsdDisk(id)} ({ByteSize.Format(diskBytes)}, sparse)");
            }
            if (ids.Count > osdCount)
            {
                await output.WriteLineAsync($"{local.DataDirectory} holds {ids.Count} OSDs; all of them run (--osds adds OSDs, it never removes one)");
            }
            return ids;
        }

        private async Task<PoolInfo> EnsurePoolAsync(ClusterClient client, IReadOnlyList<IPEndPoint> monitors, KeyringEntry admin, int osds,
            string poolName, int? pgNum, CancellationToken ct)
        {
            if (client.OsdMap!.FindPool(poolName) is { } existing)
            {
                return existing;
            }
            var size = Math.Min(3, osds);
            if (size < 3)
            {
                await output.WriteLineAsync($"only {osds} OSD(s): pool '{poolName}' keeps {size} cop{(size == 1 ? "y" : "ies")} instead of 3 (raise it with `appliance pool set {poolName} size 3` once there are 3 OSDs)");
            }
            await using var mon = new MonClient(monitors, admin.Entity, admin.Key) { Deadline = Remaining };
            MonReply reply;
            try
            {
                reply = await mon.CommandAsync(new PoolCreate(poolName, PoolType.Replicated, Size: size, MinSize: size - (size / 2), PgNum: pgNum), ct);
            }
            catch (MonitorsUnavailableException e)
            {
                throw NotUp($"the monitors did not create pool '{poolName}' ({e.Message})");
            }
            // AlreadyExists: a create of ours that committed before a leader change, answered again.
            if (reply.Status != MonReplyStatus.Ok && !(reply.Status == MonReplyStatus.Failed && reply.Code == (int)MonErrorCode.AlreadyExists))
            {
                throw new CliException(ExitCodes.Failure, $"the monitors refused to create pool '{poolName}': {reply.Message.Trim()}");
            }
            if (reply.Status == MonReplyStatus.Ok)
            {
                await output.WriteLineAsync(reply.Message.Trim());
            }
            while (client.OsdMap!.FindPool(poolName) is null)
            {
                await NextMapAsync(client, ct);
            }
            return client.OsdMap!.FindPool(poolName)!;
        }

        /// <summary>Until every OSD of ours is up in the osdmap (or a daemon exited, or time is up). One started by
        /// this run must be up at the address it printed ("osd.N listening on ADDR" in its log): the map may still
        /// show a killed predecessor up at its old address.</summary>
        private async Task WaitOsdsUpAsync(ClusterClient client, IReadOnlyList<int> ids, CancellationToken ct)
        {
            bool IsUp(int id)
            {
                if (client.OsdMap!.FindOsd(id) is not { Up: true } info)
                {
                    return false;
                }
                var name = $"osd.{id.ToString(CultureInfo.InvariantCulture)}";
                return !_logStarts.TryGetValue(name, out var from) || ListeningAddress(name, from) == info.Address;
            }
            while (ids.Where(id => !IsUp(id)).ToList() is { Count: > 0 } down)
            {
                if (Expired)
                {
                    throw NotUp(string.Join("; ", down.Select(id => $"osd.{id} is not up in the osdmap (log {local.LogFile($"osd.{id}")}){local.LogTail($"osd.{id}")}")));
                }
                await NextMapAsync(client, ct);
            }
        }

        /// <summary>The address in the last "osd.N listening on ADDR" line its log got after <paramref name="from"/>.</summary>
        private string? ListeningAddress(string name, long from)
        {
            try
            {
                using var f = new FileStream(local.LogFile(name), FileMode.Open, FileAccess.Read, FileShare.ReadWrite);
                f.Seek(Math.Min(from, f.Length), SeekOrigin.Begin);
                var prefix = $"{name} listening on ";
                string? address = null;
                using var reader = new StreamReader(f);
                while (reader.ReadLine() is { } line)
                {
                    if (line.StartsWith(prefix, StringComparison.Ordinal))
                    {
                        address = line[prefix.Length..].Trim();
                    }
                }
                return address;
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException)
            {
                return null;
            }
        }

        /// <summary>Waits for a newer osdmap, at most a second, and fails at once if one of our daemons exited.</summary>
        private async Task NextMapAsync(ClusterClient client, CancellationToken ct)
        {
            CheckAlive();
            using var wait = CancellationTokenSource.CreateLinkedTokenSource(ct);
            wait.CancelAfter(TimeSpan.FromSeconds(1));
            try
            {
                await client.WaitForEpochAsync(client.OsdMap!.Epoch + 1, wait.Token);
            }
            catch (OperationCanceledException) when (!ct.IsCancellationRequested)
            {
            }
            catch (ClusterUnavailableException) when (!Expired)
            {
            }
            CheckAlive();
            if (Expired)
            {
                throw NotUp("time is up");
            }
        }

        private void CheckAlive()
        {
            foreach (var d in _daemons)
            {
                if (local.RunningPid(d) is null)
                {
                    throw new CliException(ExitCodes.Failure, $"{d.Name} exited; the end of its log {local.LogFile(d.Name)}:{local.LogTail(d.Name)}");
                }
            }
        }

        /// <summary>
        /// Writes, reads back and removes one object in every PG of the pool. A write is acknowledged only when
        /// every member of the PG's acting set has it durable, and with every OSD up that is every copy: each PG
        /// is active and takes writes on all its copies. (The monitors' PG statistics would say active+clean
        /// directly; this works without them.)
        /// </summary>
        private async Task ProbeEveryPgAsync(ClusterClient client, PoolInfo pool, CancellationToken ct)
        {
            var map = client.OsdMap!;
            var names = new Dictionary<uint, string>();
            for (var i = 0; names.Count < pool.PgNum && i < pool.PgNum * 200; i++)
            {
                var name = $"cluster-up-probe-{i.ToString(CultureInfo.InvariantCulture)}";
                names.TryAdd(map.ObjectToPg(pool.Id, name).Seed, name);
            }
            var io = client.OpenPool(PoolName);
            var payload = Encoding.UTF8.GetBytes($"cluster up probe {DateTimeOffset.UtcNow:O}");
            try
            {
                await Task.WhenAll(names.Values.Select(async name =>
                {
                    await io.WriteFullAsync(name, payload, ct);
                    var back = await io.ReadAsync(name, 0, (ulong)payload.Length, ct);
                    if (!back.Span.SequenceEqual(payload))
                    {
                        throw new CliException(ExitCodes.Failure, $"object {name} read back differs from what was written ({back.Length} bytes): the OSDs are not healthy; see {local.LogDirectory}");
                    }
                    await io.RemoveAsync(name, ct);
                }));
            }
            catch (OsdOperationException e)
            {
                var where = e.Osd >= 0 ? $"osd.{e.Osd} (log {local.LogFile($"osd.{e.Osd}")}){local.LogTail($"osd.{e.Osd}")}" : "no OSD of it is up";
                throw NotUp($"PG {e.Pg} does not take writes: {e.Message}; it waited on {where}");
            }
            catch (ClusterClientException e)
            {
                throw NotUp($"pool '{PoolName}' does not take writes: {e.Message}");
            }
        }

        /// <summary>The cluster did not come up: what is missing, and where every daemon's log is.</summary>
        private CliException NotUp(string what, int code = ExitCodes.Failure)
        {
            var states = _daemons.Select(d => local.RunningPid(d) is { } pid
                ? $"  {d.Name}: running (pid {pid}), log {local.LogFile(d.Name)}"
                : $"  {d.Name}: NOT running, log {local.LogFile(d.Name)}");
            return new CliException(code, $"the cluster in {local.DataDirectory} is not up after {timeout.TotalSeconds:0} s at most: {what}\n{string.Join("\n", states)}\n" +
                $"fix what the logs say and run `appliance cluster up --data {local.DataDirectory}` again (it starts only what is not running), or stop it with `appliance cluster down --data {local.DataDirectory}`");
        }
    }
}
