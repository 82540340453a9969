using Appliance.Maps;
using Appliance.Osd.Protocol;

namespace Appliance.Client;

/// <summary>
/// The newest osdmap the client holds, and a signal for the next one. Maps only move forward: an older or equal
/// epoch offered late (a resumed subscription can repeat one) is ignored.
/// </summary>
internal sealed class OsdMapHolder
{
    private readonly Lock _lock = new();
    private MapView? _current;
    private TaskCompletionSource<MapView> _next = new(TaskCreationOptions.RunContinuationsAsynchronously);

    public MapView? Current => Volatile.Read(ref _current);

    /// <summary>Takes <paramref name="map"/> if it is newer than the one held; returns the view when it did.</summary>
    public MapView? Offer(OsdMap map)
    {
        TaskCompletionSource<MapView> next;
        MapView view;
        lock (_lock)
        {
            if (_current is not null && map.Epoch <= _current.Map.Epoch)
            {
                return null;
            }
            view = new MapView(map);
            Volatile.Write(ref _current, view);
            next = _next;
            _next = new TaskCompletionSource<MapView>(TaskCreationOptions.RunContinuationsAsynchronously);
        }
        next.TrySetResult(view);
        return view;
    }

    /// <summary>Completes with a map whose epoch is above <paramref name="epoch"/> (at once if held already).</summary>
    public Task<MapView> NewerThanAsync(uint epoch)
    {
        lock (_lock)
        {
            return _current is not null && _current.Map.Epoch > epoch ? Task.FromResult(_current) : _next.Task;
        }
    }

    /// <summary>Waits for a map of at least <paramref name="epoch"/>.</summary>
    public async Task<MapView> AtLeastAsync(uint epoch, CancellationToken ct)
    {
        while (true)
        {
            var view = Current;
            if (view is not null && view.Map.Epoch >= epoch)
            {
                return view;
            }
            await NewerThanAsync(view?.Map.Epoch ?? 0).WaitAsync(ct);
        }
    }
}

/// <summary>
/// One osdmap with its placement: PG → acting set, computed once per PG and kept (CRUSH runs under a lock, as
/// <see cref="OsdPlacement"/> is for one thread at a time).
/// </summary>
internal sealed class MapView(OsdMap map)
{
    private readonly OsdPlacement _placement = new(map);
    private readonly Dictionary<PgId, PgPlacement> _pgs = [];
    private readonly Lock _lock = new();

    public OsdMap Map { get; } = map;

    public PgPlacement Place(PoolInfo pool, uint seed)
    {
        lock (_lock)
        {
            var pg = new PgId(pool.Id, seed);
            if (!_pgs.TryGetValue(pg, out var placement))
            {
                placement = _placement.Place(pool, seed);
                _pgs[pg] = placement;
            }
            return placement;
        }
    }

    public PgId PgOf(PoolInfo pool, uint objectHash) => _placement.PgOf(pool, objectHash);
}
