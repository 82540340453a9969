using System.Globalization;
using System.Security.Cryptography;
using System.Text;
using Appliance.Platform.Native;

namespace Appliance.Fs.Tests.Session;

/// <summary>
/// The seeded random-syscall comparison: the same sequence of syscalls (create, write, read, truncate, mkdir, rmdir,
/// unlink, rename with flags, link, symlink, readlink, chmod, stat, xattrs, listing, fallocate, copy_file_range) on
/// a mount and on a directory of the local filesystem (ext4); every result (return value or errno, bytes read,
/// attributes, listings) and, every 100 operations, the whole tree must be identical. Used by
/// RandomOperationTests on the test filesystem and by tests/Fs.Cluster.Tests on the cluster filesystem
/// (linked there as a source file).
/// </summary>
public static class SyscallComparison
{
    private static readonly string[] Paths =
    [
        "a", "b", "c", "e", "d0", "d1", "d0/a", "d0/b", "d0/d2", "d1/a", "d1/b", "d1/d3", "d0/d2/a", "d0/d2/b", "d1/d3/c", "a/x",
    ];

    private enum Kind
    {
        Create, Write, Read, Truncate, Mkdir, Rmdir, Unlink, Rename, Link, Symlink, Readlink, Chmod, Stat, Xattr,
        List, Fallocate, CopyRange,
    }

    // Weighted toward operations that build content, so that most of the others find something to act on.
    private static readonly (Kind Kind, int Weight)[] Weights =
    [
        (Kind.Create, 10), (Kind.Write, 14), (Kind.Read, 10), (Kind.Truncate, 4), (Kind.Mkdir, 6), (Kind.Rmdir, 3),
        (Kind.Unlink, 4), (Kind.Rename, 6), (Kind.Link, 4), (Kind.Symlink, 2), (Kind.Readlink, 2), (Kind.Chmod, 3),
        (Kind.Stat, 6), (Kind.Xattr, 4), (Kind.List, 3), (Kind.Fallocate, 4), (Kind.CopyRange, 4),
    ];

    private sealed record Op(Kind Kind, string A, string B, long Offset, int Length, uint Mode, uint Flags, int DataSeed);

    /// <summary>Runs <paramref name="count"/> operations from <paramref name="seed"/> on both trees and asserts
    /// they agree; <paramref name="outcomes"/> counts results by kind.</summary>
    public static void Run(string mount, string local, int count, int seed, string label, Dictionary<string, int> outcomes)
    {
        var rng = new Random(seed);
        for (var i = 0; i < count; i++)
        {
            var op = Next(rng);
            var ours = Run(mount, op);
            var theirs = Run(local, op);
            Assert.True(ours == theirs, $"{label}, seed {seed}, operation {i}: {op}\n  mount: {ours}\n  local: {theirs}");
            var outcome = $"{op.Kind} {(ours.StartsWith("errno", StringComparison.Ordinal) ? ours : "ok")}";
            outcomes[outcome] = outcomes.GetValueOrDefault(outcome) + 1;
            if (i % 100 == 99 || i == count - 1)
            {
                var tree = Tree(mount);
                var expected = Tree(local);
                Assert.True(tree == expected, $"{label}, seed {seed}, after operation {i}: trees differ\n--- mount\n{tree}\n--- local\n{expected}");
            }
        }
    }

    private static Op Next(Random rng)
    {
        var pick = rng.Next(Weights.Sum(w => w.Weight));
        var kind = Weights.First(w => (pick -= w.Weight) < 0).Kind;
        // Mostly small offsets; sometimes far ones (sparse), never so far that comparing trees gets slow.
        var offset = rng.Next(10) == 0 ? rng.NextInt64(1 << 20, 8 << 20) : rng.Next(0, 300_000);
        var modes = new uint[] { 0x1A4, 0x180, 0x1ED, 0x1FF, 0x124, 0x9ED };
        return new Op(kind, Paths[rng.Next(Paths.Length)], Paths[rng.Next(Paths.Length)], offset, rng.Next(0, 150_000),
            modes[rng.Next(modes.Length)], (uint)rng.Next(4), rng.Next());
    }

    private static string Run(string root, Op op)
    {
        var a = Path.Combine(root, op.A);
        var b = Path.Combine(root, op.B);
        try
        {
            switch (op.Kind)
            {
                case Kind.Create:
                {
                    var flags = Constants.O_WRONLY | Constants.O_CREAT | ((op.Flags & 1) != 0 ? Constants.O_EXCL : 0) | ((op.Flags & 2) != 0 ? Constants.O_TRUNC : 0);
                    Posix.close(Posix.open(a, flags, op.Mode));
                    return "ok";
                }
                case Kind.Write:
                    return WithFd(a, Constants.O_RDWR, fd =>
                    {
                        var data = new byte[op.Length];
                        new Random(op.DataSeed).NextBytes(data);
                        Posix.pwrite(fd, data, op.Offset);
                        return "wrote";
                    });
                case Kind.Read:
                    return WithFd(a, Constants.O_RDONLY, fd =>
                    {
                        var data = new byte[op.Length];
                        var n = Posix.pread(fd, data, op.Offset);
                        return $"read {n} {Convert.ToHexString(SHA256.HashData(data.AsSpan(0, n)))[..16]}";
                    });
                case Kind.Truncate:
                    Posix.truncate(a, op.Offset);
                    return "ok";
                case Kind.Mkdir:
                    Posix.mkdir(a, op.Mode);
                    return "ok";
                case Kind.Rmdir:
                    Posix.rmdir(a);
                    return "ok";
                case Kind.Unlink:
                    Posix.unlink(a);
                    return "ok";
                case Kind.Rename:
                    Posix.renameat2(a, b, op.Flags == 3 ? 0 : op.Flags);
                    return "ok";
                case Kind.Link:
                    Posix.link(a, b);
                    return "ok";
                case Kind.Symlink:
                    Posix.symlink(op.B, a);
                    return "ok";
                case Kind.Readlink:
                    return Posix.readlink(a);
                case Kind.Chmod:
                    Posix.chmod(a, op.Mode);
                    return "ok";
                case Kind.Stat:
                    return Describe(Posix.lstatx(a));
                case Kind.Xattr:
                    if (op.Flags < 2)
                    {
                        Posix.lsetxattr(a, "user.k" + op.Flags, Encoding.UTF8.GetBytes(op.B), 0);
                        return "set";
                    }
                    var value = new byte[64];
                    var len = Posix.lgetxattr(a, "user.k" + (op.Flags - 2), value);
                    return Encoding.UTF8.GetString(value, 0, len);
                case Kind.List:
                    return string.Join(",", Directory.EnumerateFileSystemEntries(a).Select(Path.GetFileName).Order(StringComparer.Ordinal));
                case Kind.Fallocate:
                {
                    var mode = op.Flags switch { 0 => 0, 1 => Constants.FALLOC_FL_KEEP_SIZE, _ => Constants.FALLOC_FL_PUNCH_HOLE | Constants.FALLOC_FL_KEEP_SIZE };
                    return WithFd(a, Constants.O_RDWR, fd =>
                    {
                        Posix.fallocate(fd, mode, op.Offset, Math.Max(1, op.Length));
                        return "ok";
                    });
                }
                case Kind.CopyRange:
                    return WithFd(a, Constants.O_RDONLY, src => WithFd(b, Constants.O_RDWR, dst =>
                        $"copied {Posix.copy_file_range(src, op.Offset % 200_000, dst, op.DataSeed % 100_000, op.Length)}"));
                default:
                    throw new InvalidOperationException(op.Kind.ToString());
            }
        }
        catch (PlatformException e)
        {
            return $"errno {e.Errno}";
        }
        catch (IOException e) when (op.Kind == Kind.List)
        {
            return $"list failed: {e.GetType().Name}";
        }
        catch (UnauthorizedAccessException e) when (op.Kind == Kind.List)
        {
            return $"list failed: {e.GetType().Name}";
        }
    }

    private static string WithFd(string path, int flags, Func<int, string> body)
    {
        var fd = Posix.open(path, flags);
        try
        {
            return body(fd);
        }
        finally
        {
            Posix.close(fd);
        }
    }

    private static string Describe(Statx st)
    {
        var type = st.stx_mode & 0xF000;
        // Directory sizes and block counts are the filesystem's own business; everything else must agree.
        var size = type == 0x4000 ? "-" : st.stx_size.ToString(CultureInfo.InvariantCulture);
        return $"mode {st.stx_mode:x} nlink {st.stx_nlink} uid {st.stx_uid} gid {st.stx_gid} size {size}";
    }

    private static string Tree(string root)
    {
        var sb = new StringBuilder();
        Walk(root, "");
        return sb.ToString();

        void Walk(string dir, string rel)
        {
            foreach (var full in Directory.EnumerateFileSystemEntries(dir).Order(StringComparer.Ordinal))
            {
                var name = rel + Path.GetFileName(full);
                var st = Posix.lstatx(full);
                sb.Append(name).Append(": ").Append(Describe(st));
                switch (st.stx_mode & 0xF000)
                {
                    case 0xA000:
                        sb.Append(" -> ").Append(Posix.readlink(full));
                        break;
                    case 0x8000:
                        sb.Append(" sha ").Append(Convert.ToHexString(SHA256.HashData(File.ReadAllBytes(full)))[..16]);
                        break;
                }
                sb.Append('\n');
                if ((st.stx_mode & 0xF000) == 0x4000)
                {
                    Walk(full, name + "/");
                }
            }
        }
    }
}
