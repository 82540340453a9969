using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using System.Diagnostics;
using System.Net;
using System.Runtime.CompilerServices;
using System.Security.Cryptography;
using Appliance.Maps.Protocol;
using Appliance.Wire.Auth;
using Appliance.Wire.Codec;
using Appliance.Wire.Messenger;

namespace Appliance.Maps.Client;

/// <summary>The monitors could not be reached, or none is in a quorum, within the deadline.</summary>
public sealed class MonitorsUnavailableException(string message) : Exception(message);

/// <summary>The monitors answered, and the answer is no: a refused command or query (<see cref="Code"/> says why), a
/// denial, or an invalid request. Thrown by the typed <see cref="MonClient"/> methods; <see cref="MonClient.CommandAsync"/>
/// and <see cref="MonClient.QueryAsync"/> return the reply instead.</summary>
public sealed class MonRequestFailedException(MonReply reply) : Exception(reply.Message)
{
    public MonReplyStatus Status { get; } = reply.Status;

    /// <summary>Why a Failed request failed (<see cref="MonErrorCode"/>); null for other statuses.</summary>
    public MonErrorCode? Code { get; } = reply.Status == MonReplyStatus.Failed ? (MonErrorCode)reply.Code : null;
}

/// <summary>
/// Talks to the monitors for a client (the CLI, later OSDs): sends each request to a monitor, follows "the leader
/// is X", and moves on to the next monitor when one is down, has no quorum or does not answer — until an overall
/// deadline. A command keeps its (client id, sequence) across those retries, so it is applied at most once however
/// many monitors it was sent to. It follows the monmap: a subscription refreshes it every
/// <see cref="MonMapCheckInterval"/> (and <see cref="RefreshMonMapAsync"/> on demand), and the monitors it lists are
/// the ones asked from then on. Safe to use from several tasks at once.
/// </summary>
public sealed class MonClient : IAsyncDisposable
{
    // The monitors to ask: replaced whole when a newer monmap arrives (read without a lock; each attempt takes it once).
    private volatile IPEndPoint[] _monitors;
    private uint _monMapEpoch;
    private readonly string _entity;
    private readonly Secret _key;
    private readonly ILogger _log;
    // One messenger client per monitor; guarded by itself (several requests may run at once).
    private readonly Dictionary<IPEndPoint, MessengerClient> _clients = [];
    private readonly long _clientId = RandomNumberGenerator.GetInt32(1, int.MaxValue) * (long)int.MaxValue + RandomNumberGenerator.GetInt32(int.MaxValue);
    private long _seq;
    private int _current;

    public MonClient(IEnumerable<IPEndPoint> monitors, string entity, Secret key, ILogger? log = null)
    {
        _monitors = [.. monitors];
        if (_monitors.Length == 0)
        {
            throw new ArgumentException("no monitor addresses", nameof(monitors));
        }
        _entity = entity;
        _key = key;
        _log = log ?? NullLogger.Instance;
        _current = Random.Shared.Next(_monitors.Length);
    }

    /// <summary>The monitors this client asks now: those it was given, until it learns a monmap.</summary>
    public IReadOnlyList<IPEndPoint> Monitors => _monitors;

    /// <summary>How often a subscription (<see cref="WatchOsdMapAsync"/>) checks for a new monmap between its polls.</summary>
    public TimeSpan MonMapCheckInterval { get; init; } = TimeSpan.FromSeconds(30);

    /// <summary>Asks for the monmap if there is a newer one than this client knows, and uses its monitors' addresses
    /// from then on (connections to monitors no longer listed are closed).</summary>
    public async Task RefreshMonMapAsync(CancellationToken ct = default)
    {
        var update = await PollAsync(MonQuery.MonMapSince, Volatile.Read(ref _monMapEpoch), ct, wait: TimeSpan.Zero);
        if (update.Kind == MapUpdateKind.Full)
        {
            await UseMonMapAsync(MonMap.FromBytes(update.Items[0]));
        }
    }

    private async Task UseMonMapAsync(MonMap map)
    {
        var listed = map.Monitors.Select(m => IPEndPoint.TryParse(m.Address, out var ep) ? ep : null).OfType<IPEndPoint>().ToArray();
        if (listed.Length == 0 || map.Epoch <= Volatile.Read(ref _monMapEpoch))
        {
            return;
        }
        Volatile.Write(ref _monMapEpoch, map.Epoch);
        var old = _monitors;
        var current = old[(_current & int.MaxValue) % old.Length];
        _monitors = listed;
        _current = Array.IndexOf(listed, current) is var i && i >= 0 ? i : Random.Shared.Next(listed.Length);
        foreach (var gone in old.Where(o => !listed.Contains(o)))
        {
            await DropAsync(gone);
        }
        _log.LogInformation("monmap epoch {Epoch}: monitors {Monitors}", map.Epoch, string.Join(", ", listed.Select(e => e.ToString())));
    }

    /// <summary>A command that must succeed: its reply, or <see cref="MonRequestFailedException"/>.</summary>
    private async Task<MonReply> MustAsync(Task<MonReply> request)
    {
        var reply = await request;
        return reply.Status == MonReplyStatus.Ok ? reply : throw new MonRequestFailedException(reply);
    }

    /// <summary>
    /// `osd create`: a new OSD id and entity osd.N with <paramref name="key"/> (generate it with
    /// <see cref="Secret.Generate"/> and keep it: it is the OSD's key). Idempotent on <paramref name="uuid"/>: a retry
    /// with the same uuid and key gets the same id. Needs mon 'allow *'. Throws <see cref="MonRequestFailedException"/>
    /// (AlreadyExists: the uuid has another key, or the id is taken).
    /// </summary>
    public async Task<int> CreateOsdAsync(Guid uuid, Secret key, int? id = null, CancellationToken ct = default) =>
        OsdCreate.ParseCreatedId(await MustAsync(CommandAsync(new OsdCreate(uuid, key, id), ct)));

    /// <summary>The whole osdmap of <paramref name="epoch"/>, while the monitors keep it (the last
    /// mon_min_osdmap_epochs, 500 by default). An epoch too old or not yet made: <see cref="MonRequestFailedException"/>
    /// with <see cref="MonErrorCode.NotFound"/> and a message naming the epochs kept.</summary>
    public async Task<OsdMap> GetOsdMapAsync(uint epoch, CancellationToken ct = default)
    {
        var reply = await MustAsync(QueryAsync(MonQuery.OsdMapAt, epoch.ToString(System.Globalization.CultureInfo.InvariantCulture), ct));
        var map = OsdMap.FromBytes(reply.Data ?? []);
        return map.Epoch == epoch ? map : throw new WireFormatException($"asked for osdmap epoch {epoch}, got {map.Epoch}");
    }

    /// <summary>An OSD's PG statistics to the leader (this client must be osd.N for N = <see cref="PgStatsReport.Osd"/>).
    /// Kept in the leader's memory, not committed: send them again every few seconds.</summary>
    public async Task ReportPgStatsAsync(PgStatsReport report, CancellationToken ct = default)
    {
        ArgumentNullException.ThrowIfNull(report);
        await MustAsync(SendAsync(new MonRequest(_clientId, 0, null, MonQuery.PgStatsReport, Payload: report.Encode()), ct));
    }

    /// <summary>`pg ls [POOL]`: the latest statistics of every PG the leader has a report of (of one pool), in id order.</summary>
    public async Task<IReadOnlyList<PgStat>> GetPgStatsAsync(string? pool = null, CancellationToken ct = default) =>
        PgStat.DecodeDump((await MustAsync(QueryAsync(MonQuery.PgDump, pool ?? "", ct))).Data ?? []);

    /// <summary>`df`: use per pool and per OSD from the PG statistics the leader holds.</summary>
    public async Task<DfReport> GetDfAsync(CancellationToken ct = default) =>
        DfReport.Decode((await MustAsync(QueryAsync(MonQuery.Df, "", ct))).Data ?? []);

    /// <summary>How long one monitor may take to answer before the next is tried.</summary>
    public TimeSpan AttemptTimeout { get; init; } = TimeSpan.FromSeconds(3);

    /// <summary>How long a request may take in all.</summary>
    public TimeSpan Deadline { get; init; } = TimeSpan.FromSeconds(30);

    public Task<MonReply> CommandAsync(MonCommand command, CancellationToken ct = default) =>
        SendAsync(new MonRequest(_clientId, Interlocked.Increment(ref _seq), command), ct);

    public Task<MonReply> QueryAsync(MonQuery query, string argument = "", CancellationToken ct = default) =>
        SendAsync(new MonRequest(_clientId, 0, null, query, argument), ct);

    /// <summary>A ticket to <paramref name="service"/> for this client's entity, its session key opened with our key.
    /// Throws <see cref="MonitorsUnavailableException"/> as any request (and while the service has no key yet), and
    /// <see cref="AuthenticationException"/> when the monitors refuse (unknown entity, no such service, no mon
    /// read caps, or a grant that does not open with our key).</summary>
    public async Task<IssuedTicket> GetTicketAsync(string service, CancellationToken ct = default)
    {
        var reply = await QueryAsync(MonQuery.ServiceTicket, service, ct);
        if (reply is { Status: MonReplyStatus.Failed, Code: (int)MonErrorCode.Refused })
        {
            // The service has no key yet (a cluster just created): the leader rotates one in within seconds.
            throw new MonitorsUnavailableException($"no {service} ticket for {_entity} yet: {reply.Message}");
        }
        if (reply is not { Status: MonReplyStatus.Ok, Data: { } data })
        {
            throw new AuthenticationException($"no {service} ticket for {_entity}: {reply.Message}");
        }
        return TicketGrants.OpenGrant(data, _key);
    }

    /// <summary>
    /// A ticket source for a <see cref="MessengerClient"/> to a service: hands out the ticket it holds while it has
    /// more than a quarter of its life left, else fetches a new one (so every connection attempt presents a ticket
    /// that is good for a while). One fetch at a time.
    /// </summary>
    public Func<CancellationToken, ValueTask<IssuedTicket>> TicketSource(string service)
    {
        IssuedTicket? held = null;
        DateTimeOffset renewAt = default;
        var gate = new SemaphoreSlim(1, 1);
        return async ct =>
        {
            await gate.WaitAsync(ct);
            try
            {
                var now = DateTimeOffset.UtcNow;
                if (held is null || now >= renewAt)
                {
                    held = await GetTicketAsync(service, ct);
                    renewAt = now + (held.Expires - now) * 3 / 4;
                }
                return held;
            }
            finally
            {
                gate.Release();
            }
        };
    }

    /// <summary>The rotating keys of <paramref name="service"/>, for one of its daemons (this client must be
    /// `service.N`), ready for a <see cref="TicketVerifier"/>; fetch again as keys rotate (every
    /// 30 min, the monitors' rotation interval).</summary>
    public async Task<ServiceSecrets> GetServiceKeysAsync(string service, CancellationToken ct = default)
    {
        var reply = await QueryAsync(MonQuery.ServiceKeys, service, ct);
        if (reply is not { Status: MonReplyStatus.Ok, Data: { } data })
        {
            throw new AuthenticationException($"no {service} service keys for {_entity}: {reply.Message}");
        }
        return TicketGrants.OpenKeys(data, _key);
    }

    /// <summary>How long a monitor may hold a subscription poll waiting for a new epoch.</summary>
    public TimeSpan PollWait { get; init; } = TimeSpan.FromSeconds(10);

    /// <summary>
    /// The osdmap from the epoch after <paramref name="have"/>'s (from the current one when null), then each new epoch
    /// as it commits, until cancelled: every epoch is yielded in order when the monitors still hold its increment,
    /// else the current full map (a jump). Survives monitor failures like any request. Each poll is a leader lease
    /// read, so no map is older than one the client could have read before.
    /// </summary>
    public async IAsyncEnumerable<OsdMap> WatchOsdMapAsync(OsdMap? have, [EnumeratorCancellation] CancellationToken ct = default)
    {
        var map = have;
        var monMapCheck = Stopwatch.StartNew();
        // The first poll learns the monmap too: the monitors a client was started with (a node's cluster.conf) may
        // be fewer than the cluster has now.
        var first = true;
        while (true)
        {
            if (first || monMapCheck.Elapsed >= MonMapCheckInterval)
            {
                first = false;
                monMapCheck.Restart();
                try
                {
                    await RefreshMonMapAsync(ct);
                }
                catch (MonitorsUnavailableException)
                {
                    // The poll below meets the same trouble and reports it.
                }
            }
            var update = await PollAsync(MonQuery.OsdMapSince, map?.Epoch ?? 0, ct);
            switch (update.Kind)
            {
                case MapUpdateKind.Full:
                    map = OsdMap.FromBytes(update.Items[0]);
                    yield return map;
                    break;
                case MapUpdateKind.Increments when map is not null:
                    foreach (var bytes in update.Items)
                    {
                        map = map.Apply(DecodeIncrement(bytes));
                        yield return map;
                    }
                    break;
                case MapUpdateKind.Increments:
                    throw new WireFormatException("a monitor sent osdmap increments to a subscriber without a map");
            }
        }
    }

    /// <summary>The monmap when newer than <paramref name="have"/>'s epoch, then each new one (full maps).</summary>
    public async IAsyncEnumerable<MonMap> WatchMonMapAsync(MonMap? have, [EnumeratorCancellation] CancellationToken ct = default)
    {
        var epoch = have?.Epoch ?? 0;
        while (true)
        {
            var update = await PollAsync(MonQuery.MonMapSince, epoch, ct);
            if (update.Kind == MapUpdateKind.Full)
            {
                var map = MonMap.FromBytes(update.Items[0]);
                epoch = map.Epoch;
                await UseMonMapAsync(map);
                yield return map;
            }
        }
    }

    private async Task<MapUpdate> PollAsync(MonQuery query, uint since, CancellationToken ct, TimeSpan? wait = null)
    {
        var hold = wait ?? PollWait;
        var waitMs = (int)Math.Min(hold.TotalMilliseconds, MonRequest.MaxWaitMs);
        var reply = await SendAsync(new MonRequest(_clientId, 0, null, query, "", since, waitMs), ct, hold);
        if (reply.Status != MonReplyStatus.Ok || reply.Data is not { } data)
        {
            throw new MonitorsUnavailableException($"subscription refused: {reply.Status}: {reply.Message}");
        }
        var update = MapUpdate.Decode(data);
        if (update.Kind == MapUpdateKind.Full && update.Items.Count != 1)
        {
            throw new WireFormatException($"a full map update carries {update.Items.Count} maps");
        }
        return update;
    }

    private static OsdMapIncrement DecodeIncrement(byte[] bytes)
    {
        var r = new WireReader(bytes);
        var inc = OsdMapIncrement.Decode(ref r);
        r.ExpectEnd("osdmap increment");
        return inc;
    }

    /// <summary>Asks one particular monitor about itself (`mon status` shows every monitor's own view).</summary>
    public async Task<MonReply> QueryMonitorAsync(IPEndPoint monitor, MonQuery query, CancellationToken ct = default)
    {
        var client = await ConnectAsync(monitor, ct);
        var m = await client.Session.RequestAsync(MonMessageTypes.Request, new MonRequest(_clientId, 0, null, query).Encode(), AttemptTimeout, ct);
        return MonReply.Decode(m.Payload.Span);
    }

    private async Task<MonReply> SendAsync(MonRequest request, CancellationToken ct, TimeSpan extraWait = default)
    {
        using var deadline = CancellationTokenSource.CreateLinkedTokenSource(ct);
        deadline.CancelAfter(Deadline + extraWait);
        var bytes = request.Encode();
        var reasons = new List<string>();
        var refusedBy = new HashSet<IPEndPoint>();
        var backoff = TimeSpan.FromMilliseconds(50);
        var hops = 0;
        while (true)
        {
            var monitors = _monitors;
            var current = (_current & int.MaxValue) % monitors.Length;
            var target = monitors[current];
            try
            {
                var client = await ConnectAsync(target, deadline.Token);
                var m = await RequestAsync(client, bytes, AttemptTimeout + extraWait, deadline.Token);
                var reply = MonReply.Decode(m.Payload.Span);
                switch (reply.Status)
                {
                    case MonReplyStatus.NotLeader when reply.Leader is { } leader && IPEndPoint.TryParse(leader, out var ep)
                        && Array.IndexOf(monitors, ep) is var i && i >= 0 && i != current && hops++ < monitors.Length:
                        // Straight to the leader it names; a hint back to itself, or hops going round in circles (a
                        // stale hint) is handled like "no quorum": the next, after a pause.
                        _current = i;
                        continue;
                    case MonReplyStatus.NotLeader when reply.Leader is { } leader && IPEndPoint.TryParse(leader, out var ep)
                        && Array.IndexOf(monitors, ep) < 0 && hops++ < monitors.Length + 1:
                        // A leader this client does not know yet: a monitor added after the configuration it started
                        // from was written (a node that joined later), before its monmap refresh. The hint comes from
                        // a monitor this client authenticated mutually, as a monmap would: it is added to the list
                        // (the next monmap replaces the list whole).
                        _monitors = [.. monitors, ep];
                        _current = monitors.Length;
                        _log.LogInformation("mon at {Monitor} leads, a monitor not in this client's list: added", ep);
                        continue;
                    case MonReplyStatus.NotLeader:
                    case MonReplyStatus.NoQuorum:
                    case MonReplyStatus.Timeout:
                        reasons.Add($"{target}: {reply.Message}");
                        break;
                    default:
                        if (request.Command is not null && reply.Leader is { } via && IPEndPoint.TryParse(via, out var leaderEp)
                            && Array.IndexOf(monitors, leaderEp) is var l && l >= 0 && l != current && !RecentlyUnreachable(monitors[l]))
                        {
                            // A peon forwarded this command to the leader it names: the next ones go there directly
                            // (unless we failed to reach it lately: then the peon that can reach it is the way).
                            _current = l;
                        }
                        return reply;
                }
            }
            catch (AuthenticationException e)
            {
                // A monitor that has not applied a just-committed `auth add` yet does not know the entity: only a
                // refusal by every monitor is final.
                refusedBy.Add(target);
                await DropAsync(target);
                if (refusedBy.Count >= monitors.Length)
                {
                    throw new MonitorsUnavailableException($"every monitor refused {_entity}: {e.Message} (check the keyring)");
                }
                _current = (current + 1) % monitors.Length;
                continue;
            }
            catch (Exception e) when (e is TimeoutException or ConnectionClosedException || (e is OperationCanceledException && !deadline.IsCancellationRequested))
            {
                reasons.Add($"{target}: {e.Message}");
                await DropAsync(target);
                lock (_unreachableSince)
                {
                    _unreachableSince[target] = Environment.TickCount64;
                }
            }
            catch (OperationCanceledException) when (deadline.IsCancellationRequested && !ct.IsCancellationRequested)
            {
                throw Unavailable(reasons);
            }
            _current = (current + 1) % monitors.Length;
            hops = 0;
            try
            {
                await Task.Delay(backoff, deadline.Token);
            }
            catch (OperationCanceledException) when (!ct.IsCancellationRequested)
            {
                throw Unavailable(reasons);
            }
            backoff = TimeSpan.FromTicks(Math.Min(backoff.Ticks * 2, TimeSpan.FromSeconds(1).Ticks));
        }
    }

    // When each monitor last failed to answer (connection failed or timed out), in Environment.TickCount64 ms.
    private readonly Dictionary<IPEndPoint, long> _unreachableSince = [];

    /// <summary>How long a monitor that failed to answer is not chosen on a forwarding peon's word.</summary>
    private static readonly TimeSpan UnreachableMemory = TimeSpan.FromSeconds(30);

    private bool RecentlyUnreachable(IPEndPoint monitor)
    {
        lock (_unreachableSince)
        {
            return _unreachableSince.TryGetValue(monitor, out var at) && Environment.TickCount64 - at < UnreachableMemory.TotalMilliseconds;
        }
    }

    /// <summary>A request to one monitor that gives up early when the monitor is gone (its connection dropped and
    /// reconnecting fails), not only when the attempt's time is up: a dead leader costs a failover no more than that.
    /// The command keeps its (client id, seq), so sending it elsewhere is safe.</summary>
    private static async Task<Message> RequestAsync(MessengerClient client, byte[] bytes, TimeSpan timeout, CancellationToken ct)
    {
        var request = client.Session.RequestAsync(MonMessageTypes.Request, bytes, timeout, ct);
        await UnlessUnreachableAsync(request, client, "the monitor is unreachable (its connection dropped and reconnecting fails)", null, ct);
        return await request;
    }

    /// <summary>
    /// Waits for <paramref name="task"/>, giving up as soon as <paramref name="client"/> fails to (re)connect: a
    /// monitor that is gone (nothing listens) is given up on at once, with <paramref name="gone"/> as the reason, not
    /// after the whole attempt's time. <paramref name="limit"/> bounds the wait when the task has no timeout of its
    /// own. The task's own outcome is rethrown as it is. No timer runs unless there is a limit: a long poll costs no
    /// wake-ups while it waits.
    /// </summary>
    private static async Task UnlessUnreachableAsync(Task task, MessengerClient client, string gone, TimeSpan? limit, CancellationToken ct)
    {
        var until = limit is { } l ? Stopwatch.GetTimestamp() + (long)(l.TotalSeconds * Stopwatch.Frequency) : long.MaxValue;
        while (!task.IsCompleted)
        {
            // Taken before the count is read: a failure in between completes it.
            var failure = client.NextConnectFailure;
            var unreachable = client.FailedConnectsInARow > 0;
            var left = until - Stopwatch.GetTimestamp();
            if (unreachable || left <= 0)
            {
                _ = task.ContinueWith(t => _ = t.Exception, TaskScheduler.Default);
                throw new TimeoutException(unreachable ? gone : $"no answer within {limit!.Value.TotalSeconds:0.#} s");
            }
            var either = Task.WhenAny(task, failure);
            try
            {
                await (until == long.MaxValue ? either.WaitAsync(ct) : either.WaitAsync(TimeSpan.FromSeconds((double)left / Stopwatch.Frequency), ct));
            }
            catch (TimeoutException)
            {
                // Judged at the top of the loop.
            }
        }
        await task;
    }

    private MonitorsUnavailableException Unavailable(List<string> reasons) =>
        new($"no monitor answered within {Deadline.TotalSeconds:0} s (monitors: {string.Join(", ", _monitors.Select(m => m.ToString()))}); last: {string.Join("; ", reasons.TakeLast(3))}");

    private async Task<MessengerClient> ConnectAsync(IPEndPoint target, CancellationToken ct)
    {
        MessengerClient? client;
        lock (_clients)
        {
            if (!_clients.TryGetValue(target, out client))
            {
                client = new MessengerClient(target, _entity, _key, ConnectionMode.Crc, new MessengerOptions(), (_, _) => ValueTask.CompletedTask, line => _log.LogDebug("{Monitor}: {Line}", target, line));
                _clients[target] = client;
            }
        }
        try
        {
            // A monitor that refuses the connection (stopped, crashed) is passed over at once.
            await UnlessUnreachableAsync(client.StartAsync(), client, "the monitor is unreachable (connecting fails)", AttemptTimeout, ct);
        }
        catch (TimeoutException e) when (client.FailedConnectsInARow == 0)
        {
            throw new TimeoutException($"could not connect within {AttemptTimeout.TotalSeconds:0.#} s", e);
        }
        return client;
    }

    private async Task DropAsync(IPEndPoint target)
    {
        MessengerClient? client;
        lock (_clients)
        {
            _clients.Remove(target, out client);
        }
        if (client is not null)
        {
            await client.DisposeAsync();
        }
    }

    public async ValueTask DisposeAsync()
    {
        List<MessengerClient> clients;
        lock (_clients)
        {
            clients = [.. _clients.Values];
            _clients.Clear();
        }
        foreach (var c in clients)
        {
            await c.DisposeAsync();
        }
    }
}
