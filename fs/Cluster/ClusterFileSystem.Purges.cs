using Appliance.Fs.Meta;

namespace Appliance.Fs.Cluster;

/// <summary>Orphans on their way out: their data is gone, their inode record and orphan entry go with the next
/// unlink's transaction.</summary>
public sealed partial class ClusterFileSystem
{
    private readonly PurgeQueue _purges;

    /// <summary>
    /// Orphans whose data objects this mount removed, waiting for the purge of their inode record and orphan entry:
    /// the next unlink takes up to <see cref="MetaOps.PurgeRidersMax"/> of them along (one transaction instead of one
    /// per orphan), and what no unlink took within <see cref="Delay"/> is purged with a Purge call each. A crash
    /// leaves them on the orphan list, where the sweep of the next mount finds them (an inode with no links and no
    /// data is a valid state, as for a file unlinked while open).
    /// </summary>
    private sealed class PurgeQueue(ClusterFileSystem fs)
    {
        public static readonly TimeSpan Delay = TimeSpan.FromMilliseconds(200);

        private readonly Lock _lock = new();
        private readonly List<ulong> _waiting = [];
        private int _scheduled;

        public void Add(ulong ino)
        {
            lock (_lock)
            {
                _waiting.Add(ino);
            }
            Schedule();
        }

        /// <summary>Up to <see cref="MetaOps.PurgeRidersMax"/> waiting orphans, taken out (give them back with
        /// <see cref="Return"/> when the call that carried them did not succeed).</summary>
        public ulong[] Take()
        {
            lock (_lock)
            {
                var n = Math.Min(_waiting.Count, MetaOps.PurgeRidersMax);
                if (n == 0)
                {
                    return [];
                }
                var taken = _waiting.GetRange(_waiting.Count - n, n).ToArray();
                _waiting.RemoveRange(_waiting.Count - n, n);
                return taken;
            }
        }

        public void Return(ulong[] inodes)
        {
            if (inodes.Length == 0)
            {
                return;
            }
            lock (_lock)
            {
                _waiting.AddRange(inodes);
            }
            Schedule();
        }

        private void Schedule()
        {
            if (Interlocked.Exchange(ref _scheduled, 1) == 1)
            {
                return;
            }
            _ = Task.Run(async () =>
            {
                await Task.Delay(Delay);
                // Reset before taking: an orphan added from here on schedules a flush of its own.
                Interlocked.Exchange(ref _scheduled, 0);
                await FlushAsync(CancellationToken.None);
            });
        }

        /// <summary>One flush at a time: a flush that returns has seen every orphan queued before it purged,
        /// including those a flush already running (the scheduled one) had taken.</summary>
        private readonly SemaphoreSlim _flushing = new(1, 1);

        /// <summary>Purges every waiting orphan with a call of its own. One the cluster does not take (a deadline)
        /// stays on the orphan list for a later sweep; one that is gone or linked (EBUSY, ENOENT) needs nothing.</summary>
        public async Task FlushAsync(CancellationToken ct)
        {
            await _flushing.WaitAsync(ct);
            try
            {
                while (Take() is { Length: > 0 } batch)
                {
                    foreach (var ino in batch)
                    {
                        try
                        {
                            await fs.CallAsync(new MetaRequest(MetaOp.Purge, Caller.Root, Now()) { Ino = ino }, ct);
                        }
                        catch (Exception e) when (ErrnoOf(e) > 0)
                        {
                            fs._options.Log?.Invoke($"purging orphan inode {ino} failed ({e.Message}); it stays on the orphan list for a later sweep");
                        }
                    }
                }
            }
            finally
            {
                _flushing.Release();
            }
        }
    }
}
