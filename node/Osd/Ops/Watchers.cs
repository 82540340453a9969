using System.Buffers.Binary;
using System.Collections.Concurrent;
using Appliance.Osd.Protocol;
using Appliance.Store;

namespace Appliance.Osd.Ops;

/// <summary>A client connection a watch is registered on (the host's session with that client).</summary>
public interface IWatchSession
{
    string Entity { get; }

    bool IsClosed { get; }

    ValueTask SendAsync(ushort type, byte[] payload);
}

/// <summary>
/// Watches on objects, held by the primary in memory (as Ceph's, they live as long as the client's session and the
/// primary's interval: a client re-registers its watches after a map change or a reconnect). A notify is sent to
/// every watcher and completes when all acknowledged or the timeout passed; its output lists who acknowledged and
/// who did not.
/// </summary>
public sealed class Watchers
{
    private readonly ConcurrentDictionary<(int Pool, ObjectId Oid), ConcurrentDictionary<ulong, IWatchSession>> _watches = new();
    private readonly ConcurrentDictionary<(ulong Notify, ulong Cookie), TaskCompletionSource> _pending = new();
    private long _nextNotify;

    public void Watch(int pool, ObjectId oid, ulong cookie, IWatchSession session) =>
        _watches.GetOrAdd((pool, oid), _ => new())[cookie] = session;

    public void Unwatch(int pool, ObjectId oid, ulong cookie)
    {
        if (_watches.TryGetValue((pool, oid), out var w))
        {
            w.TryRemove(cookie, out _);
        }
    }

    public int Count(int pool, ObjectId oid) => _watches.TryGetValue((pool, oid), out var w) ? w.Count(kv => !kv.Value.IsClosed) : 0;

    /// <summary>Notifies every watcher; returns (acknowledged cookies, timed-out cookies) encoded for the reply:
    /// u32 count, then per watcher u64 cookie and u8 acknowledged.</summary>
    public async Task<byte[]> NotifyAsync(int pool, ObjectId oid, ReadOnlyMemory<byte> payload, TimeSpan timeout, CancellationToken ct)
    {
        var id = (ulong)Interlocked.Increment(ref _nextNotify);
        var waits = new List<(ulong Cookie, Task Acked)>();
        if (_watches.TryGetValue((pool, oid), out var watchers))
        {
            foreach (var (cookie, session) in watchers)
            {
                if (session.IsClosed)
                {
                    watchers.TryRemove(cookie, out _);
                    continue;
                }
                var tcs = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
                _pending[(id, cookie)] = tcs;
                waits.Add((cookie, tcs.Task));
                try
                {
                    await session.SendAsync(OsdMessageType.WatchNotify, new WatchNotifyMessage(id, cookie, pool, oid.Name, payload).ToBytes());
                }
                catch (Exception e) when (e is IOException or ObjectDisposedException or OperationCanceledException)
                {
                    tcs.TrySetCanceled();
                }
            }
        }
        try
        {
            await Task.WhenAll(waits.Select(w => w.Acked)).WaitAsync(timeout, ct);
        }
        catch (Exception e) when (e is TimeoutException or TaskCanceledException)
        {
            // Reported per watcher below.
        }
        var result = new byte[4 + waits.Count * 9];
        BinaryPrimitives.WriteUInt32LittleEndian(result, (uint)waits.Count);
        for (var i = 0; i < waits.Count; i++)
        {
            BinaryPrimitives.WriteUInt64LittleEndian(result.AsSpan(4 + i * 9), waits[i].Cookie);
            result[4 + i * 9 + 8] = waits[i].Acked.IsCompletedSuccessfully ? (byte)1 : (byte)0;
            _pending.TryRemove((id, waits[i].Cookie), out _);
        }
        return result;
    }

    public void Acknowledge(WatchNotifyAck ack)
    {
        if (_pending.TryRemove((ack.NotifyId, ack.Cookie), out var tcs))
        {
            tcs.TrySetResult();
        }
    }

    /// <summary>A session closed: its watches end.</summary>
    public void Forget(IWatchSession session)
    {
        foreach (var (_, w) in _watches)
        {
            foreach (var (cookie, s) in w)
            {
                if (ReferenceEquals(s, session))
                {
                    w.TryRemove(cookie, out _);
                }
            }
        }
    }
}
