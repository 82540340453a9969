using System.Text;
using Appliance.Fs.Api;
using Appliance.Fs.Protocol;

namespace Appliance.Fs.TestFs;

/// <summary>
/// An in-memory POSIX filesystem over the inode-level API: regular files (sparse, in 64 KiB chunks), directories
/// with stable readdir cookies, symlinks, device nodes and fifos, hard links, xattrs, lookup counts and open
/// handles keeping unlinked inodes alive. One lock guards everything: it is a reference for correctness, not
/// speed. Every answer completes synchronously unless <see cref="Gate"/> is set.
/// </summary>
public sealed partial class MemoryFileSystem : IFuseFileSystem
{
    public const int ChunkSize = 64 * 1024;
    public const long MaxFileSize = 1L << 44;
    private const uint SIfMt = 0xF000;
    private const uint SIfDir = 0x4000;
    private const uint SIfReg = 0x8000;
    private const uint SIfLnk = 0xA000;
    private const uint SIsGid = 0x400;
    private const int NameMax = 255;

    private readonly Lock _lock = new();
    private readonly Dictionary<ulong, Node> _nodes = [];
    private readonly Dictionary<ulong, ulong> _handles = [];
    private ulong _nextIno = FuseConstants.RootId + 1;
    private ulong _nextHandle = 1;

    private long _chunks;

    public MemoryFileSystem(uint rootUid = 0, uint rootGid = 0, uint rootMode = 0x1FF)
    {
        var root = new Node(FuseConstants.RootId, 1, SIfDir | (rootMode & 0xFFF), rootUid, rootGid, Timestamp.Now) { Nlink = 2 };
        root.Dir = new DirEntries(FuseConstants.RootId);
        _nodes[root.Ino] = root;
    }

    /// <summary>The space data may take; a write or fallocate past it fails with ENOSPC.</summary>
    public long Capacity { get; init; } = 16L << 30;

    /// <summary>How long the kernel may cache names and attributes.</summary>
    public TimeSpan EntryTimeout { get; init; } = TimeSpan.FromSeconds(1);

    public TimeSpan AttrTimeout { get; init; } = TimeSpan.FromSeconds(1);

    /// <summary>
    /// When set, lookups, getattr, mkdir, reads and writes first await it with (operation, name or null, token):
    /// a test makes the backend slow, asynchronous, or hang (a task that never completes, even ignoring the token).
    /// </summary>
    public Func<string, string?, CancellationToken, Task>? Gate { get; set; }

    /// <summary>The largest single write the kernel sent (shows the negotiated write size).</summary>
    public int LargestWrite { get; private set; }

    /// <summary>Inodes currently held (for leak checks): every one must be reachable, looked up, or open.</summary>
    public int NodeCount
    {
        get
        {
            lock (_lock)
            {
                return _nodes.Count;
            }
        }
    }

    /// <summary>The kernel's lookup count of a node as we track it (0 when unknown).</summary>
    public ulong LookupCount(ulong ino)
    {
        lock (_lock)
        {
            return _nodes.TryGetValue(ino, out var n) ? n.Lookups : 0;
        }
    }

    private sealed class Node(ulong ino, ulong generation, uint mode, uint uid, uint gid, Timestamp now)
    {
        public ulong Ino { get; } = ino;
        public ulong Generation { get; } = generation;
        public uint Mode = mode;
        public uint Uid = uid;
        public uint Gid = gid;
        public uint Rdev;
        public uint Nlink = 1;
        public long Size;
        public Timestamp Atime = now;
        public Timestamp Mtime = now;
        public Timestamp Ctime = now;
        public ulong Lookups;
        public int OpenCount;
        public Dictionary<long, byte[]>? Chunks;
        public DirEntries? Dir;
        public string? Target;
        public Dictionary<string, byte[]>? Xattrs;

        public bool IsDir => (Mode & SIfMt) == SIfDir;
        public bool IsReg => (Mode & SIfMt) == SIfReg;
    }

    /// <summary>A directory's names, each with a cookie that never changes while it exists, so a listing continued
    /// from an offset neither repeats nor skips entries that were not touched meanwhile.</summary>
    private sealed class DirEntries(ulong parent)
    {
        public const long FirstCookie = 3; // 1 and 2 are "." and ".."
        public readonly Dictionary<string, (ulong Ino, long Cookie)> ByName = new(StringComparer.Ordinal);
        public readonly List<(long Cookie, string Name)> Ordered = [];
        public long NextCookie = FirstCookie;
        public ulong Parent = parent;

        public void Add(string name, ulong ino)
        {
            var cookie = NextCookie++;
            ByName[name] = (ino, cookie);
            Ordered.Add((cookie, name));
        }

        public void Remove(string name)
        {
            if (ByName.Remove(name, out var e))
            {
                Ordered.RemoveAt(IndexAfter(e.Cookie - 1));
            }
        }

        /// <summary>The index of the first entry with a cookie greater than <paramref name="offset"/>.</summary>
        public int IndexAfter(long offset)
        {
            int lo = 0, hi = Ordered.Count;
            while (lo < hi)
            {
                var mid = (lo + hi) / 2;
                if (Ordered[mid].Cookie <= offset)
                {
                    lo = mid + 1;
                }
                else
                {
                    hi = mid;
                }
            }
            return lo;
        }
    }

    private static FsError Err(int errno) => new(errno);

    private static bool NameTooLong(string name) => Encoding.UTF8.GetByteCount(name) > NameMax;

    private FileAttr AttrOf(Node n) => new()
    {
        Ino = n.Ino,
        Size = n.IsDir ? 4096UL : n.IsReg ? (ulong)n.Size : n.Target is { } t ? (ulong)Encoding.UTF8.GetByteCount(t) : 0,
        Blocks = n.Chunks is null ? 0 : (ulong)n.Chunks.Count * (ChunkSize / 512),
        Atime = n.Atime,
        Mtime = n.Mtime,
        Ctime = n.Ctime,
        Mode = n.Mode,
        Nlink = n.Nlink,
        Uid = n.Uid,
        Gid = n.Gid,
        Rdev = n.Rdev,
        BlockSize = 4096,
    };

    /// <summary>An entry for the kernel: counts one lookup.</summary>
    private Entry EntryOf(Node n)
    {
        n.Lookups++;
        return new Entry(n.Ino, n.Generation, AttrOf(n), EntryTimeout, AttrTimeout);
    }

    private void MaybeFree(Node n)
    {
        if (n.Nlink == 0 && n.Lookups == 0 && n.OpenCount == 0 && n.Ino != FuseConstants.RootId && _nodes.Remove(n.Ino))
        {
            _chunks -= n.Chunks?.Count ?? 0;
        }
    }

    private bool TryDir(ulong ino, out Node dir, out FsError error)
    {
        if (!_nodes.TryGetValue(ino, out dir!))
        {
            error = Err(FsErrno.ENOENT);
            return false;
        }
        if (dir.Dir is null)
        {
            error = Err(FsErrno.ENOTDIR);
            return false;
        }
        error = FsError.Ok;
        return true;
    }

    private Node NewNode(FuseContext ctx, Node parent, uint mode)
    {
        var now = Timestamp.Now;
        var gid = ctx.Gid;
        if ((parent.Mode & SIsGid) != 0)
        {
            gid = parent.Gid;
            if ((mode & SIfMt) == SIfDir)
            {
                mode |= SIsGid;
            }
        }
        var ino = _nextIno++;
        var n = new Node(ino, 1, mode, ctx.Uid, gid, now);
        _nodes[ino] = n;
        return n;
    }

    private static void Touch(Node n, bool content)
    {
        var now = Timestamp.Now;
        n.Ctime = now;
        if (content)
        {
            n.Mtime = now;
        }
    }
}
