using Appliance.Platform.Concurrency;
using System.Buffers.Binary;
using System.Collections.Concurrent;
using System.Net;
using System.Security.Cryptography;
using Appliance.Maps;
using Appliance.Maps.Client;
using Appliance.Osd.Protocol;
using Appliance.Wire.Auth;
using Appliance.Wire.Codec;
using Appliance.Wire.Messenger;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;

namespace Appliance.Client;

/// <summary>
/// A client of the cluster, as librados' Rados + Objecter: holds the newest osdmap (by subscription to the
/// monitors, resumed when it drops), a session per OSD (opened on first use with a ticket for service "osd",
/// replaced when the OSD's address changes, closed when it is marked down), and sends each request to the primary
/// of its object's PG, resending under newer maps with the same tid until it completes or its deadline passes.
/// Every request carries this process's random <see cref="Nonce"/>, so two clients with one entity are told apart
/// (blocklisting, exactly-once resends). Open a pool with <see cref="OpenPool"/>. Safe for concurrent use.
/// </summary>
public sealed partial class ClusterClient : IAsyncDisposable
{
    private readonly IOsdMapSource _mapSource;
    private readonly Func<CancellationToken, ValueTask<IssuedTicket>> _tickets;
    private readonly ClusterClientOptions _options;
    private readonly ILogger _log;
    private readonly OsdMapHolder _maps = new();
    private readonly Dictionary<int, OsdSession> _sessions = [];
    private readonly ConcurrentDictionary<Task, byte> _closing = new();
    private readonly ByteBudget _budget;
    private readonly SemaphoreSlim _opSlots;
    private readonly CancellationTokenSource _stop = new();
    private readonly IAsyncDisposable[] _owned;
    private readonly Task _mapLoop;
    private readonly Task _watchLoop;
    private long _lastTid;
    private volatile string _lastMapError = "no answer yet";
    private int _disposed;

    /// <summary>
    /// A client over any map source and ticket source (tests and embedders; <see cref="ConnectAsync"/> builds one on
    /// the monitors). Starts the subscription at once; <see cref="WaitForMapAsync"/> waits for the first map.
    /// </summary>
    public ClusterClient(IOsdMapSource maps, Func<CancellationToken, ValueTask<IssuedTicket>> tickets, string entity,
        ClusterClientOptions? options = null)
        : this(maps, tickets, entity, options, [])
    {
    }

    private ClusterClient(IOsdMapSource maps, Func<CancellationToken, ValueTask<IssuedTicket>> tickets, string entity,
        ClusterClientOptions? options, IAsyncDisposable[] owned)
    {
        _mapSource = maps;
        _tickets = tickets;
        Entity = entity;
        _options = options ?? new ClusterClientOptions();
        _owned = owned;
        _log = (_options.LoggerFactory ?? NullLoggerFactory.Instance).CreateLogger<ClusterClient>();
        _budget = new ByteBudget(Math.Max(1, _options.MaxInFlightBytes));
        _opSlots = new SemaphoreSlim(Math.Max(1, _options.MaxInFlightOps));
        Span<byte> nonce = stackalloc byte[8];
        do
        {
            RandomNumberGenerator.Fill(nonce);
            Nonce = BinaryPrimitives.ReadUInt64LittleEndian(nonce);
        }
        while (Nonce == 0);
        _mapLoop = MapLoopAsync();
        _watchLoop = WatchLoopAsync();
    }

    /// <summary>
    /// Connects to the cluster as <paramref name="entity"/> with its <paramref name="key"/>: subscribes to osdmaps and
    /// returns once the first one is here (within <see cref="ClusterClientOptions.ConnectTimeout"/>, else
    /// <see cref="ClusterUnavailableException"/>). Tickets for the OSDs come from the monitors as they are needed.
    /// </summary>
    public static async Task<ClusterClient> ConnectAsync(IEnumerable<IPEndPoint> monitors, string entity, Secret key,
        ClusterClientOptions? options = null, CancellationToken ct = default)
    {
        options ??= new ClusterClientOptions();
        var monLog = (options.LoggerFactory ?? NullLoggerFactory.Instance).CreateLogger<MonClient>();
        var endpoints = monitors.ToArray();
        // Two monitor clients: a MonClient runs one request at a time (its connections and current monitor are not
        // guarded), and the subscription's poll is held open by a monitor for up to its PollWait — a ticket fetch
        // must not wait behind it.
        var subscription = new MonClient(endpoints, entity, key, monLog);
        var ticketClient = new MonClient(endpoints, entity, key, monLog);
        var client = new ClusterClient(new MonOsdMapSource(subscription), ticketClient.TicketSource("osd"), entity, options, [subscription, ticketClient]);
        try
        {
            await client.WaitForMapAsync(ct);
            return client;
        }
        catch
        {
            await client.DisposeAsync();
            throw;
        }
    }

    /// <summary>The authenticated entity this client acts as (client.admin, client.vm, ...).</summary>
    public string Entity { get; }

    /// <summary>This client instance's random number, sent with every request (the OSDs key request ids and the
    /// blocklist by entity and nonce).</summary>
    public ulong Nonce { get; }

    /// <summary>The newest osdmap the client holds (null before the first).</summary>
    public OsdMap? OsdMap => _maps.Current?.Map;

    public ClusterClientOptions Options => _options;

    /// <summary>Waits for the first osdmap, at most <see cref="ClusterClientOptions.ConnectTimeout"/>.</summary>
    public Task WaitForMapAsync(CancellationToken ct = default) => WaitForEpochAsync(1, ct);

    /// <summary>Waits until the client holds osdmap <paramref name="epoch"/> or newer (after a monitor command
    /// that created a pool, say), at most <see cref="ClusterClientOptions.ConnectTimeout"/>.</summary>
    public async Task<OsdMap> WaitForEpochAsync(uint epoch, CancellationToken ct = default)
    {
        using var limit = CancellationTokenSource.CreateLinkedTokenSource(ct);
        limit.CancelAfter(_options.ConnectTimeout);
        try
        {
            var view = await _maps.AtLeastAsync(epoch, limit.Token);
            return view.Map;
        }
        catch (OperationCanceledException e) when (!ct.IsCancellationRequested)
        {
            var have = _maps.Current?.Map.Epoch;
            throw new ClusterUnavailableException(
                $"no osdmap of epoch {epoch} or newer within {_options.ConnectTimeout.TotalSeconds:0.#} s (holding {(have is null ? "none" : $"epoch {have}")}); " +
                $"last subscription error: {_lastMapError}", e);
        }
    }

    /// <summary>A handle on pool <paramref name="name"/> as the newest map has it.</summary>
    public IoContext OpenPool(string name)
    {
        var map = OsdMap ?? throw new ClusterUnavailableException("the client holds no osdmap yet (await WaitForMapAsync first)");
        var pool = map.FindPool(name) ?? throw new PoolNotFoundException(name);
        return new IoContext(this, pool.Id, pool.Name);
    }

    /// <summary>Follows the osdmap subscription; when it ends or fails, resumes from the newest map held.</summary>
    private async Task MapLoopAsync()
    {
        await Task.Yield();
        var backoff = TimeSpan.FromMilliseconds(50);
        while (!_stop.IsCancellationRequested)
        {
            try
            {
                await foreach (var map in _mapSource.WatchOsdMapAsync(_maps.Current?.Map, _stop.Token))
                {
                    ApplyMap(map);
                    backoff = TimeSpan.FromMilliseconds(50);
                }
                _lastMapError = "the subscription ended";
            }
            catch (OperationCanceledException) when (_stop.IsCancellationRequested)
            {
                return;
            }
            catch (Exception e) when (e is MonitorsUnavailableException or AuthenticationException or IOException or TimeoutException
                or WireFormatException or MapSequenceException or OperationCanceledException)
            {
                _lastMapError = e.Message;
                _log.LogWarning("osdmap subscription dropped ({Error}); resuming from epoch {Epoch}", e.Message, _maps.Current?.Map.Epoch ?? 0);
            }
            catch (Exception e)
            {
                // Not a failure we know of: a bug. Said loudly; the subscription still resumes, since a client whose
                // map stops moving would send to dead primaries until every request timed out.
                _lastMapError = e.Message;
                _log.LogError(e, "osdmap subscription failed unexpectedly; resuming from epoch {Epoch}", _maps.Current?.Map.Epoch ?? 0);
            }
            try
            {
                await Task.Delay(backoff, _stop.Token);
            }
            catch (OperationCanceledException)
            {
                return;
            }
            backoff = TimeSpan.FromTicks(Math.Min(backoff.Ticks * 2, TimeSpan.FromSeconds(2).Ticks));
        }
    }

    /// <summary>Takes a map: newer maps only. Sessions to OSDs that are down or gone are closed and those whose
    /// address changed are dropped (the next request opens one to the new address); requests waiting on them see
    /// the new map and resend.</summary>
    internal void ApplyMap(OsdMap map)
    {
        var view = _maps.Offer(map);
        if (view is null)
        {
            return;
        }
        ClientMetrics.MapEpochs.Add(1);
        _log.LogDebug("osdmap epoch {Epoch}: {Up} of {Osds} OSDs up", map.Epoch, map.UpCount, map.Osds.Count);
        List<OsdSession> stale = [];
        lock (_sessions)
        {
            foreach (var (id, session) in _sessions)
            {
                var info = map.FindOsd(id);
                if (info is not { Up: true } || info.Address != session.Address)
                {
                    stale.Add(session);
                }
            }
            foreach (var s in stale)
            {
                _sessions.Remove(s.Osd);
            }
        }
        foreach (var s in stale)
        {
            _log.LogDebug("closing the session to {Session}: down or moved in osdmap epoch {Epoch}", s, map.Epoch);
            Close(s);
        }
    }

    /// <summary>The session to <paramref name="osd"/> at its address in the map (opened now if there is none), or
    /// null when the map's address is not usable.</summary>
    private OsdSession? SessionFor(OsdInfo osd)
    {
        OsdSession? stale = null;
        OsdSession? session = null;
        lock (_sessions)
        {
            if (_sessions.TryGetValue(osd.Id, out var held))
            {
                if (!held.Refused.IsCompleted &&
                    (held.Address == osd.Address || _maps.Current?.Map.FindOsd(osd.Id)?.Address == held.Address))
                {
                    // (The second: the caller routed with an older map than the one the session follows; the OSD is
                    // where the newest map says, so a stale entry must not replace a good session.)
                    return held;
                }
                stale = held;
                _sessions.Remove(osd.Id);
            }
            ObjectDisposedException.ThrowIf(_disposed != 0, this);
            if (OsdSession.ParseAddress(osd.Address) is { } endpoint)
            {
                var id = osd.Id;
                var messenger = new MessengerClient(endpoint, Entity, _tickets, _options.Mode, _options.Messenger,
                    (s, m) => OnOsdMessageAsync(id, s, m), line => _log.LogDebug("osd.{Osd}: {Line}", id, line));
                session = new OsdSession(osd.Id, osd.Address, messenger);
                _sessions[osd.Id] = session;
            }
        }
        if (stale is not null)
        {
            Close(stale);
        }
        session?.Start();
        return session;
    }

    /// <summary>The session currently held for <paramref name="osd"/>, without opening one.</summary>
    private OsdSession? HeldSession(int osd)
    {
        lock (_sessions)
        {
            return _sessions.GetValueOrDefault(osd);
        }
    }

    private void DropSession(OsdSession session)
    {
        lock (_sessions)
        {
            if (!(_sessions.TryGetValue(session.Osd, out var held) && held == session && _sessions.Remove(session.Osd)))
            {
                return;
            }
        }
        Close(session);
    }

    private void Close(OsdSession session)
    {
        var t = session.DisposeAsync().AsTask();
        _closing.TryAdd(t, 0);
        _ = t.ContinueWith(done => _closing.TryRemove(done, out _), TaskScheduler.Default);
    }

    /// <summary>Messages an OSD sends without being asked: watch notifies. (A reply whose request gave up waiting —
    /// it was resent elsewhere or timed out — also lands here, and is dropped.)</summary>
    private ValueTask OnOsdMessageAsync(int osd, MessageSession session, Message message)
    {
        switch (message.Type)
        {
            case OsdMessageType.WatchNotify:
                WatchNotifyMessage notify;
                try
                {
                    notify = WatchNotifyMessage.FromBytes(message.Payload.Span);
                }
                catch (WireFormatException e)
                {
                    _log.LogWarning("osd.{Osd} sent a watch notify that does not decode: {Error}", osd, e.Message);
                    return ValueTask.CompletedTask;
                }
                // Not awaited: a callback may take its time without holding the session's other messages.
                _ = DeliverNotifyAsync(session, notify);
                return ValueTask.CompletedTask;
            case OsdMessageType.OpReply:
                _log.LogDebug("osd.{Osd}: a late reply (seq {ReplyTo}) to a request that was resent or gave up", osd, message.ReplyTo);
                return ValueTask.CompletedTask;
            default:
                _log.LogWarning("osd.{Osd} sent an unexpected message of type {Type}", osd, message.Type);
                return ValueTask.CompletedTask;
        }
    }

    public async ValueTask DisposeAsync()
    {
        if (Interlocked.Exchange(ref _disposed, 1) != 0)
        {
            return;
        }
        await _stop.CancelAsync();
        await _mapLoop;
        await _watchLoop;
        List<OsdSession> sessions;
        lock (_sessions)
        {
            sessions = [.. _sessions.Values];
            _sessions.Clear();
        }
        foreach (var s in sessions)
        {
            await s.DisposeAsync();
        }
        await Task.WhenAll(_closing.Keys);
        foreach (var o in _owned)
        {
            await o.DisposeAsync();
        }
        // _stop is not disposed: a request racing the disposal may still link to its token (and then fails with
        // ObjectDisposedException from the check below it, not from a disposed source).
    }
}
