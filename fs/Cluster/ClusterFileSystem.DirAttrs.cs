using Appliance.Fs.Meta;

namespace Appliance.Fs.Cluster;

/// <summary>The attributes of directories this mount just changed, to answer the kernel's GETATTR that follows.</summary>
public sealed partial class ClusterFileSystem
{
    private readonly DirAttrCache _dirAttrs;

    /// <summary>
    /// A create or an unlink makes the kernel drop its cached attributes of the directory, and with
    /// default_permissions its next permission check there asks for them again (one GETATTR per create or unlink).
    /// Make and Unlink return the directory as they left it (<see cref="MetaOps.WantParent"/>); it is kept here for
    /// <see cref="ClusterFsOptions.CacheTimeout"/> from the reply, as the kernel would have kept it. Kept only when
    /// no other change of this mount overlapped the call (the order the metadata PG applied overlapping changes in
    /// is not known here), dropped when a change of this mount touches the directory, and dropped by another
    /// mount's notify before the kernel hears of it; a notify that is lost leaves the cache timeout as the bound,
    /// as for the kernel's own cache.
    /// </summary>
    private sealed class DirAttrCache(TimeSpan lifetime)
    {
        private readonly Lock _lock = new();
        private readonly Dictionary<ulong, (Inode Dir, long Expires)> _dirs = [];
        private int _inFlight;
        private long _epoch;
        private long _invalidations;

        public readonly record struct Ticket(long Epoch, bool Overlapped, long Invalidations);

        /// <summary>A change starts: what it may touch is forgotten now (a rename or rmdir may remove a directory:
        /// everything is).</summary>
        public Ticket Begin(MetaRequest req)
        {
            lock (_lock)
            {
                if (req.Op is MetaOp.Rename or MetaOp.RmDir)
                {
                    _dirs.Clear();
                }
                _dirs.Remove(req.Ino);
                _dirs.Remove(req.Ino2);
                var overlapped = _inFlight > 0;
                _inFlight++;
                return new Ticket(++_epoch, overlapped, _invalidations);
            }
        }

        /// <summary>The change ended (<paramref name="reply"/> null when it failed without one).</summary>
        public void End(Ticket t, MetaReply? reply)
        {
            lock (_lock)
            {
                _inFlight--;
                if (reply?.Inode is { } n)
                {
                    _dirs.Remove(n.Ino);
                }
                // Lost the race with another change of ours (it started while this one was out, or was out when
                // this one started) or with another mount's notify: the reply may not be the newest state.
                if (reply?.Parent is { } dir && !t.Overlapped && t.Epoch == _epoch && t.Invalidations == _invalidations)
                {
                    _dirs[dir.Ino] = (dir, Environment.TickCount64 + (long)lifetime.TotalMilliseconds);
                }
            }
        }

        public bool TryGet(ulong ino, out Inode dir, out TimeSpan left)
        {
            lock (_lock)
            {
                if (_dirs.TryGetValue(ino, out var e) && e.Expires - Environment.TickCount64 is var ms and > 0)
                {
                    (dir, left) = (e.Dir, TimeSpan.FromMilliseconds(ms));
                    return true;
                }
                _dirs.Remove(ino);
                (dir, left) = (null!, default);
                return false;
            }
        }

        /// <summary>Another mount changed these inodes (called before the kernel's cache hears of it).</summary>
        public void Invalidate(IEnumerable<ulong> inodes)
        {
            lock (_lock)
            {
                _invalidations++;
                foreach (var ino in inodes)
                {
                    _dirs.Remove(ino);
                }
            }
        }
    }
}
