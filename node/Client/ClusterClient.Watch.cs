using System.Collections.Concurrent;
using Appliance.Osd.Protocol;
using Appliance.Wire.Messenger;
using Microsoft.Extensions.Logging;

namespace Appliance.Client;

/// <summary>A watch on an object (<see cref="IoContext.WatchAsync"/>); disposing it unwatches.</summary>
public sealed class ObjectWatch : IAsyncDisposable
{
    private readonly ClusterClient _client;
    private int _disposed;

    internal ObjectWatch(ClusterClient client, ulong cookie, string objectName)
    {
        _client = client;
        Cookie = cookie;
        ObjectName = objectName;
    }

    public ulong Cookie { get; }
    public string ObjectName { get; }

    /// <summary>Unwatches: the OSD is told within the client's op timeout (its failure throws as any request's);
    /// nothing is sent once the client is disposed.</summary>
    public async ValueTask DisposeAsync()
    {
        if (Interlocked.Exchange(ref _disposed, 1) == 0)
        {
            await _client.UnwatchAsync(Cookie);
        }
    }
}

public sealed partial class ClusterClient
{
    /// <summary>A watch the client keeps registered: where it was registered last (the OSD, its session and that
    /// session's connection count), so a move or a reconnect is seen.</summary>
    private sealed class WatchState(ulong cookie, OpTarget target, Func<WatchNotifyMessage, ValueTask> onNotify, Action<Exception>? onError)
    {
        public ulong Cookie { get; } = cookie;
        public OpTarget Target { get; } = target;
        public Func<WatchNotifyMessage, ValueTask> OnNotify { get; } = onNotify;
        public Action<Exception>? OnError { get; } = onError;
        public (int Osd, OsdSession Session, int Connects)? RegisteredWith { get; set; }
        /// <summary>Registering again failed for good (the object is gone, say): no more tries.</summary>
        public bool Broken { get; set; }
        /// <summary>The first registration is still in flight (its caller hears how it went; the keeper waits).</summary>
        public bool Registering { get; set; } = true;
    }

    private readonly ConcurrentDictionary<ulong, WatchState> _watches = new();
    // Cookies start at a random point, so two client instances (two mounts of one filesystem, two NBD servers) never
    // present the same cookie at an OSD, which keys an object's watchers by cookie: the second watch would replace the
    // first and only one of them would hear notifies.
    private long _lastCookie = Random.Shared.NextInt64(1, long.MaxValue / 2);

    internal async Task<ObjectWatch> WatchAsync(OpTarget target, Func<WatchNotifyMessage, ValueTask> onNotify, Action<Exception>? onError, CancellationToken ct)
    {
        ArgumentNullException.ThrowIfNull(onNotify);
        var cookie = (ulong)Interlocked.Increment(ref _lastCookie);
        var watch = new WatchState(cookie, target, onNotify, onError);
        // Known before the OSD registers it, so a notify that follows the registration at once finds its callback.
        _watches[cookie] = watch;
        try
        {
            var outcome = await SubmitAsync(target, [OsdOp.Watch(cookie)], null, ct);
            watch.RegisteredWith = (outcome.Osd, outcome.Session, outcome.Session.Client.Connects);
            watch.Registering = false;
        }
        catch
        {
            _watches.TryRemove(cookie, out _);
            throw;
        }
        return new ObjectWatch(this, cookie, target.Object);
    }

    internal async Task UnwatchAsync(ulong cookie)
    {
        if (!_watches.TryRemove(cookie, out var watch) || _disposed != 0 || watch.Broken)
        {
            return; // a broken watch is registered nowhere
        }
        try
        {
            await SubmitAsync(watch.Target, [OsdOp.Unwatch(cookie)], null, CancellationToken.None);
        }
        catch (ObjectNotFoundException)
        {
            // The object went, and its watches with it.
        }
    }

    /// <summary>Runs a watch's callback for a notify, then acknowledges it (also for a cookie we no longer watch, so
    /// the notifier does not wait for its timeout).</summary>
    private async Task DeliverNotifyAsync(MessageSession session, WatchNotifyMessage notify)
    {
        if (_watches.TryGetValue(notify.Cookie, out var watch))
        {
            try
            {
                await watch.OnNotify(notify);
            }
            catch (Exception e)
            {
                // The application's callback: its failure is its own, reported loudly; the notify is acknowledged.
                _log.LogError(e, "the callback of watch {Cookie} on '{Object}' threw", notify.Cookie, notify.Object);
            }
        }
        try
        {
            await session.SendAsync(OsdMessageType.WatchNotifyAck, new WatchNotifyAck(notify.NotifyId, notify.Cookie).ToBytes(), 0, _stop.Token);
        }
        catch (Exception e) when (e is ConnectionClosedException or OperationCanceledException)
        {
            // The session closed (OSD down, or the client stopping): the notifier's timeout covers the missing ack.
        }
    }

    /// <summary>Keeps watches registered: after each new map, and every <see cref="ClusterClientOptions.WatchCheckInterval"/>,
    /// a watch whose primary is another OSD (or the same one behind a new or reconnected session) than the one it
    /// was registered with is registered again with the same cookie.</summary>
    private async Task WatchLoopAsync()
    {
        await Task.Yield();
        while (!_stop.IsCancellationRequested)
        {
            var epoch = _maps.Current?.Map.Epoch ?? 0;
            try
            {
                await Task.WhenAny(_maps.NewerThanAsync(epoch), Task.Delay(_options.WatchCheckInterval, _stop.Token));
                if (_stop.IsCancellationRequested || _watches.IsEmpty || _maps.Current is not { } view)
                {
                    continue;
                }
                List<Task> again = [];
                foreach (var watch in _watches.Values)
                {
                    if (!watch.Broken && !watch.Registering && NeedsRegistering(view, watch))
                    {
                        again.Add(RegisterAgainAsync(watch));
                    }
                }
                await Task.WhenAll(again);
            }
            catch (OperationCanceledException) when (_stop.IsCancellationRequested)
            {
                return;
            }
        }
    }

    private bool NeedsRegistering(MapView view, WatchState watch)
    {
        if (watch.RegisteredWith is not { } at)
        {
            return true;
        }
        Route route;
        try
        {
            route = RouteOf(view, watch.Target);
        }
        catch (PoolNotFoundException)
        {
            return true; // reported by the attempt
        }
        return route.Primary != at.Osd || HeldSession(at.Osd) != at.Session || at.Session.Client.Connects != at.Connects;
    }

    private async Task RegisterAgainAsync(WatchState watch)
    {
        try
        {
            var outcome = await SubmitAsync(watch.Target, [OsdOp.Watch(watch.Cookie)], null, _stop.Token);
            watch.RegisteredWith = (outcome.Osd, outcome.Session, outcome.Session.Client.Connects);
            _log.LogDebug("watch {Cookie} on '{Object}' registered again with osd.{Osd}", watch.Cookie, watch.Target.Object, outcome.Osd);
            if (!_watches.ContainsKey(watch.Cookie))
            {
                // Lost a race with an unwatch: its Unwatch may have reached the OSD before our Watch did. Say it again,
                // after ours, so the OSD does not keep a watch nobody holds.
                await SubmitAsync(watch.Target, [OsdOp.Unwatch(watch.Cookie)], null, _stop.Token);
            }
        }
        catch (Exception e) when (e is ClusterClientException or ObjectDisposedException or OperationCanceledException)
        {
            if (_stop.IsCancellationRequested || !_watches.ContainsKey(watch.Cookie))
            {
                return;
            }
            // A timeout is tried again at the next check; anything else (the object is gone, permission) is final.
            watch.RegisteredWith = null;
            watch.Broken = e is not OsdRequestTimeoutException;
            _log.LogWarning("watch {Cookie} on '{Object}' could not be registered again: {Error}", watch.Cookie, watch.Target.Object, e.Message);
            try
            {
                watch.OnError?.Invoke(e);
            }
            catch (Exception callbackError)
            {
                _log.LogError(callbackError, "the error callback of watch {Cookie} threw", watch.Cookie);
            }
        }
    }
}
