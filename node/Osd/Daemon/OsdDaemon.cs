using System.Globalization;
using System.Net;
using System.Net.Sockets;
using System.Threading.Channels;
using Appliance.Maps;
using Appliance.Maps.Client;
using Appliance.Maps.Protocol;
using Appliance.Osd.Ops.Classes;
using Appliance.Osd.Heartbeat;
using Appliance.Osd.Ops;
using Appliance.Osd.Protocol;
using Appliance.Platform.Devices;
using Appliance.Store;
using Appliance.Wire.Auth;
using Appliance.Wire.Codec;
using Appliance.Wire.Messenger;
using Microsoft.Extensions.Logging;

namespace Appliance.Osd.Daemon;

/// <summary>What an OSD process needs: its id, disk, the cluster's configuration directory (cluster.conf and its
/// keyring), where to listen, and the host it is on (its CRUSH location).</summary>
public sealed record OsdDaemonOptions(int Id, string DataPath, string ConfDir)
{
    /// <summary>Address to listen on; port 0 picks a free port. The address is reported to the monitors at boot.</summary>
    public IPEndPoint Listen { get; init; } = new(IPAddress.Loopback, 0);
    public string Host { get; init; } = Environment.MachineName;
    /// <summary>How often the OSD sends its PG statistics to the monitors.</summary>
    public TimeSpan StatsInterval { get; init; } = TimeSpan.FromSeconds(2);
    /// <summary>How often the OSD tells the monitors it is alive (OsdBeacon); null (the default) follows the central
    /// configuration's osd_beacon_report_interval (5 s). It must stay well below the monitors' mon_osd_report_timeout
    /// (20 s by default, 10 s at least), past which they mark a silent OSD down.</summary>
    public TimeSpan? BeaconInterval { get; init; }
    public StoreOptions Store { get; init; } = new();
    /// <summary>The messenger's settings for the OSD's server and its sessions to peers (tests inject transport
    /// faults here).</summary>
    public MessengerOptions Messenger { get; init; } = new();
}

/// <summary>
/// The OSD process: mounts the store (checking that its superblock names this OSD), authenticates to the monitors
/// as osd.N, fetches the `osd` service keys (again as they rotate) to verify clients' and peers' tickets, listens,
/// reports boot with its address, follows the osdmaps, serves requests and peers through <see cref="OsdService"/>,
/// reports peers it cannot reach, and sends PG statistics. <see cref="StopAsync"/> is the orderly stop.
/// </summary>
public sealed partial class OsdDaemon : IAsyncDisposable
{
    private readonly OsdDaemonOptions _options;
    private readonly ILoggerFactory _loggers;
    private readonly ILogger _log;
    private readonly CancellationTokenSource _stop = new();
    private readonly List<Task> _loops = [];
    private IBlockDevice? _device;
    private WatchedDevice? _watched;
    private UdpHeartbeats? _heartbeatNet;
    private Heartbeater? _heartbeater;
    /// <summary>The heartbeater's verdicts (peer failed / answers again), sent to the monitors off its thread.</summary>
    private readonly Channel<(int Osd, bool Failed)> _verdicts = Channel.CreateUnbounded<(int, bool)>(new UnboundedChannelOptions { SingleReader = true });
    private readonly RejoinBackoff _backoff = new(TimeProvider.System);
    private TimeSpan _beaconInterval = TimeSpan.FromSeconds(5);
    private ObjectStore? _store;
    private MonClient? _mon;
    private MonClient? _subscription;
    private MessengerServer? _server;
    private MessengerPeers? _peers;
    private OsdService? _service;
    private ServiceSecrets? _keys;
    private TaskCompletionSource _refreshKeys = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private OsdBoot? _boot;
    /// <summary>The epoch this OSD was last marked up from at its own address, as its maps showed (-1: not since its
    /// last boot).</summary>
    private long _upFrom = -1;

    public OsdDaemon(OsdDaemonOptions options, ILoggerFactory loggers)
    {
        _options = options;
        _loggers = loggers;
        _log = loggers.CreateLogger("Appliance.Osd");
    }

    public string Entity => $"osd.{_options.Id}";
    public EndPoint? Address { get; private set; }
    public OsdService? Service => _service;
    /// <summary>The heartbeat logic (peers watched, reports made), once started.</summary>
    public Heartbeater? Heartbeater => _heartbeater;

    public static string KeyringPath(string confDir, int id) => Path.Combine(confDir, $"osd.{id}.keyring");

    public async Task StartAsync(CancellationToken ct = default)
    {
        var conf = ClusterConf.Parse(await File.ReadAllTextAsync(Path.Combine(_options.ConfDir, ClusterConf.FileName), ct), ClusterConf.FileName);
        var keyringPath = KeyringPath(_options.ConfDir, _options.Id);
        var keyring = Keyring.Load(keyringPath);
        var key = keyring.Find(Entity)?.Key ?? throw new InvalidOperationException($"{keyringPath} holds no key for {Entity}");

        _device = _watched = File.Exists(_options.DataPath) || _options.DataPath.StartsWith("/dev/", StringComparison.Ordinal)
            ? new WatchedDevice(FileDevice.Open(_options.DataPath), TimeProvider.System)
            : throw new FileNotFoundException($"no disk at {_options.DataPath}; create the OSD first (appliance osd create --data PATH)");
        _store = await ObjectStore.MountAsync(_device, _options.Store, ct);
        if (_store.Superblock.OsdId != _options.Id)
        {
            throw new InvalidOperationException($"{_options.DataPath} belongs to osd.{_store.Superblock.OsdId}, not osd.{_options.Id}");
        }

        // Two monitor clients: a subscription poll is held by a monitor for up to 10 s, and tickets for peer
        // sessions and commands must not wait behind it.
        var monitors = conf.Monitors.Select(m => IPEndPoint.Parse(m.Address)).ToList();
        _mon = new MonClient(monitors, Entity, key, _loggers.CreateLogger("Appliance.Osd.MonClient"));
        _subscription = new MonClient(monitors, Entity, key, _loggers.CreateLogger("Appliance.Osd.MonSubscription"));
        _keys = await _mon.GetServiceKeysAsync("osd", ct);
        // A ticket sealed under a key this OSD has not fetched yet (the monitors rotated one in since): fetch again
        // now rather than at the next periodic refresh; the peer or client retries its connection meanwhile.
        _keys.Missing = _ => _refreshKeys.TrySetResult();
        var messenger = _options.Messenger;
        _peers = new MessengerPeers(_options.Id, _mon.TicketSource("osd"), messenger, _loggers.CreateLogger("Appliance.Osd.Peers"));
        _service = new OsdService(_options.Id, _store, _peers, new ObjectClassRegistry().Add(new LockClass()).Add(new FsMetaClass()), TimeProvider.System, _loggers.CreateLogger("Appliance.Osd.Pg"));
        _peers.Received = (from, type, payload) => DeliverPeerAsync(from, type, payload, null);
        _service.RequestUpThruAsync = RequestAliveAsync;
        _service.LoadExistingPgs();

        _server = new MessengerServer(_ => null, messenger, HandleAsync, line => _log.LogDebug("messenger: {Line}", line),
            new TicketVerifier(_keys, TimeSpan.FromMinutes(5)));
        Socket heartbeatSocket;
        (Address, heartbeatSocket) = ListenWithHeartbeats(_server, _options.Listen);
        var address = Address.ToString()!;
        _log.LogInformation("{Osd} listening on {Address} (heartbeats on its UDP port)", Entity, address);
        _heartbeatNet = new UdpHeartbeats(heartbeatSocket, CurrentKeyId,
            id => _keys!.Find(id) is { } k ? Convert.FromBase64String(k.Key.ToBase64()) : null,
            _ => _refreshKeys.TrySetResult(), _loggers.CreateLogger("Appliance.Osd.Heartbeat"));
        _heartbeater = new Heartbeater(_options.Id, _heartbeatNet, new VerdictQueue(_verdicts.Writer), TimeProvider.System,
            _watched.OldestOutstanding, _loggers.CreateLogger("Appliance.Osd.Heartbeat")) { WatchdogLimit = TimeSpan.FromSeconds(10) };
        _heartbeatNet.Heartbeater = _heartbeater;
        await ReadConfigAsync(ct);
        _heartbeatNet.Start();

        await CatchUpBeforeBootAsync(ct);

        var weight = OsdMap.WeightForCapacity(_store.StatFs().TotalBytes);
        _boot = new OsdBoot(_options.Id, address, _options.Host, weight, address, _store.Superblock.StoreId);
        var boot = await _mon.CommandAsync(_boot, ct);
        if (boot.Status != MonReplyStatus.Ok)
        {
            throw new InvalidOperationException($"the monitors refused the boot of {Entity}: {boot.Message}");
        }
        _backoff.Up();
        _loops.Add(Task.Run(() => FollowMapsAsync(_stop.Token)));
        _loops.Add(Task.Run(() => SendVerdictsAsync(_stop.Token)));
        _loops.Add(Task.Run(() => HousekeepingAsync(_stop.Token)));
        _loops.Add(Task.Run(() => RemoveStraysAsync(_stop.Token)));
        _loops.Add(Task.Run(() => RefreshKeysAsync(_stop.Token)));
        _log.LogInformation("{Osd} booted (store {Used}/{Total} bytes used)", Entity, _store.StatFs().UsedBytes, _store.StatFs().TotalBytes);
    }

    /// <summary>Every 10 s: deletes the copies of PGs that are active+clean elsewhere (OsdService.Strays).</summary>
    private async Task RemoveStraysAsync(CancellationToken ct)
    {
        using var timer = new PeriodicTimer(TimeSpan.FromSeconds(10));
        try
        {
            while (await timer.WaitForNextTickAsync(ct).ConfigureAwait(false))
            {
                try
                {
                    await _service!.RemoveCleanStraysAsync(ct);
                }
                catch (Exception e) when (e is StoreException or IOException)
                {
                    _log.LogWarning("{Osd}: deleting stray PGs failed: {Error}", Entity, e.Message);
                }
            }
        }
        catch (OperationCanceledException) when (ct.IsCancellationRequested)
        {
        }
    }

    private readonly SemaphoreSlim _aliveGate = new(1, 1);
    private uint _aliveSent;
    private long _aliveSentAt;

    /// <summary>
    /// Asks the monitors to record this OSD up through <paramref name="want"/> (OsdAlive), for PGs about to activate.
    /// Coalesced: one request at a time, for at least the newest epoch this OSD has (up_thru becomes the monitors'
    /// next epoch, so it covers every interval up to there), and not again within a second for what was asked.
    /// </summary>
    private async Task RequestAliveAsync(uint want, CancellationToken ct)
    {
        await _aliveGate.WaitAsync(ct);
        try
        {
            var map = _service?.Map;
            if (map?.FindOsd(_options.Id) is { } me && me.UpThru >= want)
            {
                return;
            }
            if (_aliveSent >= want && Environment.TickCount64 - _aliveSentAt < 1000)
            {
                return;
            }
            var ask = Math.Max(want, map?.Epoch ?? 0);
            var reply = await _mon!.CommandAsync(new OsdAlive(_options.Id, ask), ct);
            _aliveSent = ask;
            _aliveSentAt = Environment.TickCount64;
            if (reply.Status != MonReplyStatus.Ok)
            {
                _log.LogDebug("{Osd}: up_thru {Want} not granted: {Message}", Entity, ask, reply.Message);
            }
        }
        catch (Exception e) when (e is MonitorsUnavailableException or IOException or TimeoutException)
        {
            // The PG asks again (WaitUpThruAsync loops until its interval ends).
            _log.LogDebug("{Osd}: up_thru {Want} not asked: {Error}", Entity, want, e.Message);
        }
        finally
        {
            _aliveGate.Release();
        }
    }

    private async Task HousekeepingAsync(CancellationToken ct)
    {
        var reported = new HashSet<(int Osd, uint Epoch)>();
        var lastStats = DateTime.MinValue;
        var lastBeacon = DateTime.UtcNow;
        var lastConfig = DateTime.UtcNow;
        // Marked down while it runs: why, and when it may boot again (RejoinBackoff); kept until a boot is accepted.
        string? rejoin = null;
        var rejoinAt = DateTime.MaxValue;
        var heldByWatchdog = false;
        using var timer = new PeriodicTimer(TimeSpan.FromMilliseconds(500));
        while (await timer.WaitForNextTickAsync(ct).ConfigureAwait(false))
        {
            try
            {
                var map = _service!.Map;
                if (DateTime.UtcNow - lastConfig >= TimeSpan.FromSeconds(30))
                {
                    lastConfig = DateTime.UtcNow;
                    await ReadConfigAsync(ct);
                }
                // A store I/O outstanding past the grace: the heartbeater stops answering pings, and the beacons and
                // re-boots stop too, so a hung disk makes a down OSD even where no peer watches it.
                var stalled = _heartbeater!.WatchdogTripped;
                string? bootAgain = null;
                if (!stalled && DateTime.UtcNow - lastBeacon >= (_options.BeaconInterval ?? _beaconInterval))
                {
                    // Without beacons the monitors mark this OSD down mon_osd_report_timeout after its boot, however
                    // well it serves. Beacons follow the boot on this one loop, so a refused one means the monitors
                    // marked it down since.
                    lastBeacon = DateTime.UtcNow;
                    var beacon = await _mon!.CommandAsync(new OsdBeacon(_options.Id), ct);
                    if (beacon.Status != MonReplyStatus.Ok)
                    {
                        bootAgain = $"the monitors refused its beacon ({beacon.Message})";
                    }
                }
                var upFrom = Interlocked.Read(ref _upFrom);
                if (map?.FindOsd(_options.Id) is { Up: false } && upFrom >= 0 && map.Epoch > upFrom)
                {
                    bootAgain = $"osdmap epoch {map.Epoch} marks it down";
                }
                if (bootAgain is not null && rejoin is null)
                {
                    // Marked down while it runs (Ceph's "wrongly marked me down"): peers' heartbeats went unanswered,
                    // a peer saw a connection reset, or its beacons were late. Nothing else would mark it up again and
                    // its PGs would stay undersized for good, so it boots again, after a backoff that doubles while
                    // it keeps being marked down (a flapping OSD cannot churn the maps).
                    rejoin = bootAgain;
                    var wait = _backoff.MarkedDown();
                    rejoinAt = DateTime.UtcNow + wait;
                    _log.LogWarning("{Osd} is marked down while it runs: {Why}; booting again in {Wait:0.#} s", Entity, bootAgain, wait.TotalSeconds);
                }
                if (rejoin is not null && stalled != heldByWatchdog)
                {
                    heldByWatchdog = stalled;
                    if (stalled)
                    {
                        _log.LogWarning("{Osd}: not booting again while a store I/O is outstanding past the watchdog limit", Entity);
                    }
                }
                if (rejoin is not null && !stalled && DateTime.UtcNow >= rejoinAt)
                {
                    // A boot racing a map in flight is harmless: the monitors answer a boot of an OSD that is up at
                    // the same address with "no change". _upFrom is cleared only if no newer map recorded a new up
                    // meanwhile, and only once the boot is accepted (a failed attempt is retried on the next tick).
                    var again = await _mon!.CommandAsync(_boot!, ct);
                    if (again.Status == MonReplyStatus.Ok)
                    {
                        _log.LogInformation("{Osd} booted again ({Why})", Entity, rejoin);
                        Interlocked.CompareExchange(ref _upFrom, -1, upFrom);
                        lastBeacon = DateTime.UtcNow;
                        _backoff.Up();
                        rejoin = null;
                        rejoinAt = DateTime.MaxValue;
                    }
                    else
                    {
                        _log.LogWarning("{Osd}: boot refused: {Message}", Entity, again.Message);
                    }
                }
                if (map is not null && DateTime.UtcNow - lastStats >= _options.StatsInterval)
                {
                    // What `pg ls`, `df`, `status` and pool quotas read: the PGs this OSD is the primary of.
                    lastStats = DateTime.UtcNow;
                    var fs = _store!.StatFs();
                    var pgs = _service.PrimaryStats()
                        .Select(p => new PgStat(p.Pg, p.State, (ulong)Math.Max(0, p.Objects), (ulong)Math.Max(0, p.Bytes), p.Acting, p.Primary, map.Epoch)
                            { Detail = p.Detail.Length <= PgStat.MaxDetail / 4 ? p.Detail : p.Detail[..(PgStat.MaxDetail / 4)] })
                        .ToList();
                    for (var i = 0; i < pgs.Count || i == 0; i += PgStatsReport.MaxPgs)
                    {
                        await _mon!.ReportPgStatsAsync(new PgStatsReport(_options.Id, map.Epoch, (ulong)fs.TotalBytes, (ulong)fs.UsedBytes,
                            pgs.Skip(i).Take(PgStatsReport.MaxPgs).ToList()), ct);
                    }
                }
                // A peer that refuses or resets connections is reported at once (silent failures: the heartbeater).
                foreach (var osd in _peers!.Unreachable())
                {
                    if (map?.FindOsd(osd) is { Up: true } && reported.Add((osd, map.Epoch)))
                    {
                        _log.LogWarning("{Osd}: osd.{Peer} is unreachable; reporting it to the monitors", Entity, osd);
                        await _mon!.CommandAsync(new OsdFailureReport(osd, _options.Id, Immediate: true), ct);
                    }
                }
            }
            catch (OperationCanceledException) when (ct.IsCancellationRequested)
            {
                return;
            }
            catch (Exception e) when (e is MonitorsUnavailableException or MonRequestFailedException or IOException or TimeoutException)
            {
                _log.LogWarning("{Osd}: housekeeping: {Error}", Entity, e.Message);
            }
        }
    }

    /// <summary>The heartbeater's verdicts, to the monitors: a silent peer reported failed (not immediate: the
    /// monitors wait for enough reporters), a returning one's report withdrawn. Sent from this loop so the
    /// heartbeat thread never waits for a monitor.</summary>
    private async Task SendVerdictsAsync(CancellationToken ct)
    {
        try
        {
            await foreach (var (osd, failed) in _verdicts.Reader.ReadAllAsync(ct))
            {
                try
                {
                    var map = _service!.Map;
                    if (failed && (map?.FindOsd(osd) is not { Up: true } || map.FindOsd(_options.Id) is not { Up: true }))
                    {
                        continue; // down already, or this OSD's own reports would not count
                    }
                    MonCommand command = failed ? new OsdFailureReport(osd, _options.Id, Immediate: false) : new OsdFailureCancel(osd, _options.Id);
                    var reply = await _mon!.CommandAsync(command, ct);
                    _log.LogInformation("{Osd}: {Command}: {Reply}", Entity, command.Describe(), reply.Message);
                }
                catch (Exception e) when (e is MonitorsUnavailableException or MonRequestFailedException or IOException or TimeoutException)
                {
                    // A lost report is made again a grace later while the peer stays silent.
                    _log.LogWarning("{Osd}: could not send a heartbeat verdict on osd.{Peer}: {Error}", Entity, osd, e.Message);
                }
            }
        }
        catch (OperationCanceledException) when (ct.IsCancellationRequested)
        {
        }
    }

    private sealed class VerdictQueue(ChannelWriter<(int Osd, bool Failed)> writer) : IHeartbeatReports
    {
        public void Failed(int osd, TimeSpan silent) => writer.TryWrite((osd, true));

        public void Recovered(int osd) => writer.TryWrite((osd, false));
    }

    /// <summary>Reads the heartbeat and beacon options from the central configuration (at start, then every 30 s):
    /// osd_heartbeat_interval (fractional seconds), osd_heartbeat_grace, osd_io_stall_timeout and
    /// osd_beacon_report_interval (seconds).
    /// Monitors that cannot answer leave the values as they were.</summary>
    private async Task ReadConfigAsync(CancellationToken ct)
    {
        async Task<double?> GetAsync(string name)
        {
            try
            {
                var r = await _mon!.QueryAsync(MonQuery.ConfigGet, name, ct);
                return r.Status == MonReplyStatus.Ok && double.TryParse(r.Message.Trim(), NumberStyles.Float, CultureInfo.InvariantCulture, out var v) && v > 0 ? v : null;
            }
            catch (Exception e) when (e is MonitorsUnavailableException or MonRequestFailedException or IOException or TimeoutException)
            {
                _log.LogDebug("{Osd}: config get {Name}: {Error}", Entity, name, e.Message);
                return null;
            }
        }
        if (await GetAsync("osd_heartbeat_interval") is { } interval)
        {
            _heartbeater!.Interval = TimeSpan.FromSeconds(interval);
        }
        if (await GetAsync("osd_heartbeat_grace") is { } grace)
        {
            _heartbeater!.Grace = TimeSpan.FromSeconds(grace);
        }
        if (await GetAsync("osd_io_stall_timeout") is { } stall)
        {
            _heartbeater!.WatchdogLimit = TimeSpan.FromSeconds(stall);
        }
        if (await GetAsync("osd_beacon_report_interval") is { } beacon)
        {
            _beaconInterval = TimeSpan.FromSeconds(beacon);
        }
    }

    private uint? CurrentKeyId()
    {
        try
        {
            return _keys!.Current.Id;
        }
        catch (InvalidOperationException)
        {
            return null; // no key yet
        }
    }

    /// <summary>Listens for messages (TCP) and heartbeats (UDP) on the same address and port. With port 0 the port
    /// is one free for both: taken for UDP first, then for TCP (another if that one is taken).</summary>
    private static (EndPoint Address, Socket Heartbeats) ListenWithHeartbeats(MessengerServer server, IPEndPoint listen)
    {
        for (var attempt = 0; ; attempt++)
        {
            var udp = UdpHeartbeats.Bind(listen);
            try
            {
                var port = ((IPEndPoint)udp.LocalEndPoint!).Port;
                return (server.ListenTcp(new IPEndPoint(listen.Address, port)), udp);
            }
            catch (SocketException e) when (e.SocketErrorCode == SocketError.AddressAlreadyInUse && listen.Port == 0 && attempt < 20)
            {
                udp.Dispose();
            }
            catch
            {
                udp.Dispose();
                throw;
            }
        }
    }

    /// <summary>Fetches the service keys again every 10 minutes (they rotate every 30), or at once (at most once a
    /// second) when a ticket named a key this OSD does not hold.</summary>
    private async Task RefreshKeysAsync(CancellationToken ct)
    {
        while (!ct.IsCancellationRequested)
        {
            try
            {
                await _refreshKeys.Task.WaitAsync(TimeSpan.FromMinutes(10), ct);
            }
            catch (TimeoutException)
            {
            }
            catch (OperationCanceledException)
            {
                return;
            }
            _refreshKeys = new(TaskCreationOptions.RunContinuationsAsynchronously);
            try
            {
                var fresh = await _mon!.GetServiceKeysAsync("osd", ct);
                foreach (var k in fresh.All)
                {
                    _keys!.Add(k);
                }
                await Task.Delay(TimeSpan.FromSeconds(1), ct);
            }
            catch (OperationCanceledException) when (ct.IsCancellationRequested)
            {
                return;
            }
            catch (Exception e) when (e is MonitorsUnavailableException or IOException or TimeoutException or AuthenticationException)
            {
                _log.LogWarning("{Osd}: could not fetch the osd service keys: {Error}", Entity, e.Message);
            }
        }
    }

    private sealed class SessionWatch(MessageSession session) : IWatchSession
    {
        public string Entity => session.PeerEntity;
        public bool IsClosed { get; set; }

        public async ValueTask SendAsync(ushort type, byte[] payload) => await session.SendAsync(type, payload);
    }

    private readonly System.Runtime.CompilerServices.ConditionalWeakTable<MessageSession, SessionWatch> _watchSessions = [];

    private async ValueTask HandleAsync(MessageSession session, Message message)
    {
        var peer = session.PeerEntity;
        if (peer.StartsWith("osd.", StringComparison.Ordinal) && int.TryParse(peer.AsSpan(4), out var from))
        {
            await DeliverPeerAsync(from, message.Type, message.Payload, (session, message.Seq), message.Keep);
            return;
        }
        switch (message.Type)
        {
            case OsdMessageType.OpRequest:
            {
                OsdOpRequest req;
                // The request's data stay in the message's buffer (no copy) until the request completes; the store
                // takes a reference of its own for a change it applies (ReplicatedBackend).
                var kept = message.Keep();
                try
                {
                    req = OsdOpRequest.FromShared(message.Payload) with { KeepData = message.Keep };
                }
                catch (WireFormatException e)
                {
                    kept.Dispose();
                    _log.LogWarning("{Peer} sent a malformed request: {Error}", peer, e.Message);
                    var refusal = new OsdOpReply(0, OsdResult.InvalidArgument, _service!.Epoch, default, 0, []) { Message = $"malformed request: {e.Message}" };
                    await session.SendAsync(OsdMessageType.OpReply, refusal.ToBytes(), message.Seq);
                    return;
                }
                var watch = _watchSessions.GetValue(session, s => new SessionWatch(s));
                // Started here, on the session's delivery path, so requests on one object take their place in the
                // object's queue in the order the client sent them; the reply goes out when it completes.
                var running = _service!.HandleClientAsync(req, peer, session.PeerCaps ?? EntityCaps.None, watch, _stop.Token);
                _ = ReplyAsync(session, message.Seq, req, running, kept);
                return;
            }
            case OsdMessageType.WatchNotifyAck:
                try
                {
                    _service!.Watchers.Acknowledge(WatchNotifyAck.FromBytes(message.Payload.Span));
                }
                catch (WireFormatException e)
                {
                    _log.LogWarning("{Peer} sent a malformed notify ack: {Error}", peer, e.Message);
                }
                return;
            default:
                _log.LogWarning("{Peer} sent message type {Type}, which clients may not send; dropped", peer, message.Type);
                return;
        }
    }

    private async Task ReplyAsync(MessageSession session, ulong seq, OsdOpRequest req, Task<OsdOpReply> running, IDisposable kept)
    {
        ReadOnlyMemory<byte> bytes;
        try
        {
            OsdOpReply reply;
            try
            {
                reply = await running;
            }
            catch (OperationCanceledException)
            {
                reply = new OsdOpReply(req.Tid, OsdResult.TryAgain, _service!.Epoch, default, 0, []) { Message = $"{Entity} is stopping" };
            }
            catch (Exception e)
            {
                // Every request gets an answer: without one the client waits for it until its deadline and nobody
                // learns why. An exception here is our bug (or a store failure): said loudly, answered as an I/O error.
                _log.LogError(e, "{Osd}: request {Tid} of {Peer} on {Pg}/{Object} failed", Entity, req.Tid, session.PeerEntity, req.Pg, req.Object);
                reply = new OsdOpReply(req.Tid, OsdResult.IoError, _service!.Epoch, default, 0, []) { Message = $"{Entity} failed the request: {e.GetType().Name}: {e.Message}" };
            }
            // Encoded before the request's buffer goes: an output may slice it (a method that answers with its input).
            bytes = reply.Encode();
        }
        finally
        {
            kept.Dispose();
        }
        try
        {
            await session.SendWithoutCopyAsync(OsdMessageType.OpReply, bytes, seq);
        }
        catch (Exception e) when (e is IOException or ObjectDisposedException or OperationCanceledException)
        {
            _log.LogDebug("reply to {Peer} tid {Tid} not sent: {Error}", session.PeerEntity, req.Tid, e.Message);
        }
    }

    private async ValueTask DeliverPeerAsync(int from, ushort type, ReadOnlyMemory<byte> payload, (MessageSession Session, ulong Seq)? via,
        Func<IDisposable>? keep = null)
    {
        var answer = await _service!.HandlePeerAsync(from, type, payload,
            (t, p) => via is { } v ? new ValueTask(v.Session.SendAsync(t, p).AsTask()) : _peers!.SendAsync(from, t, p, CancellationToken.None), keep);
        if (answer is { } a && via is { } w)
        {
            await w.Session.SendWithoutCopyAsync(a.Type, a.Payload, w.Seq);
        }
    }

    /// <summary>The orderly stop: stop serving, tell the monitors this OSD is going down, unmount.</summary>
    public async Task StopAsync()
    {
        _stop.Cancel();
        try
        {
            await Task.WhenAll(_loops);
        }
        catch (OperationCanceledException)
        {
        }
        if (_mon is not null)
        {
            try
            {
                using var bounded = new CancellationTokenSource(TimeSpan.FromSeconds(3));
                await _mon.CommandAsync(new OsdFailureReport(_options.Id, _options.Id, Immediate: true), bounded.Token);
            }
            catch (Exception e) when (e is MonitorsUnavailableException or IOException or OperationCanceledException or TimeoutException)
            {
                _log.LogWarning("{Osd}: could not tell the monitors it stops: {Error}", Entity, e.Message);
            }
        }
        await DisposeAsync();
    }

    public async ValueTask DisposeAsync()
    {
        _stop.Cancel();
        _heartbeatNet?.Dispose();
        if (_server is not null)
        {
            await _server.DisposeAsync();
        }
        if (_service is not null)
        {
            await _service.DisposeAsync();
        }
        if (_peers is not null)
        {
            await _peers.DisposeAsync();
        }
        if (_mon is not null)
        {
            await _mon.DisposeAsync();
        }
        if (_subscription is not null)
        {
            await _subscription.DisposeAsync();
        }
        if (_store is not null)
        {
            await _store.DisposeAsync();
        }
        if (_device is not null)
        {
            await _device.DisposeAsync();
        }
        _stop.Dispose();
    }
}
