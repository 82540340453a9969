using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using Appliance.Fs.Api;

namespace Appliance.Fs.Protocol;

/// <summary>Pure encoding of replies and notifications into spans.</summary>
public static class Replies
{
    public static readonly int OutHeaderSize = Unsafe.SizeOf<fuse_out_header>();

    /// <summary>Writes the reply header for a payload of <paramref name="payloadLength"/> bytes (0 with an error).</summary>
    public static void WriteHeader(Span<byte> buffer, int payloadLength, int errno, ulong unique)
    {
        var header = new fuse_out_header { len = (uint)(OutHeaderSize + payloadLength), error = -errno, unique = unique };
        MemoryMarshal.Write(buffer, in header);
    }

    /// <summary>Writes a structure at the start of <paramref name="payload"/>; returns its size.</summary>
    public static int Write<T>(Span<byte> payload, in T value)
        where T : unmanaged
    {
        MemoryMarshal.Write(payload, in value);
        return Unsafe.SizeOf<T>();
    }

    public static fuse_attr ToAttr(in FileAttr a) => new()
    {
        ino = a.Ino,
        size = a.Size,
        blocks = a.Blocks,
        atime = (ulong)a.Atime.Seconds,
        atimensec = a.Atime.Nanoseconds,
        mtime = (ulong)a.Mtime.Seconds,
        mtimensec = a.Mtime.Nanoseconds,
        ctime = (ulong)a.Ctime.Seconds,
        ctimensec = a.Ctime.Nanoseconds,
        mode = a.Mode,
        nlink = a.Nlink,
        uid = a.Uid,
        gid = a.Gid,
        rdev = a.Rdev,
        blksize = a.BlockSize,
    };

    public static fuse_entry_out ToEntryOut(in Entry e)
    {
        var (entrySec, entryNsec) = Split(e.EntryTimeout);
        var (attrSec, attrNsec) = Split(e.AttrTimeout);
        return new fuse_entry_out
        {
            nodeid = e.NodeId,
            generation = e.Generation,
            entry_valid = entrySec,
            entry_valid_nsec = entryNsec,
            attr_valid = attrSec,
            attr_valid_nsec = attrNsec,
            attr = ToAttr(e.Attr),
        };
    }

    public static fuse_attr_out ToAttrOut(in AttrReply a)
    {
        var (sec, nsec) = Split(a.Timeout);
        return new fuse_attr_out { attr_valid = sec, attr_valid_nsec = nsec, attr = ToAttr(a.Attr) };
    }

    public static fuse_kstatfs ToKstatfs(in StatFsReply s) => new()
    {
        blocks = s.Blocks,
        bfree = s.BlocksFree,
        bavail = s.BlocksAvailable,
        files = s.Files,
        ffree = s.FilesFree,
        bsize = s.BlockSize,
        namelen = s.NameMax,
        frsize = s.FragmentSize,
    };

    /// <summary>A notification: header (unique 0, error = code) then the body. Returns the total length.</summary>
    public static int WriteNotifyInvalInode(Span<byte> buffer, ulong nodeId, long offset, long length)
    {
        var body = new fuse_notify_inval_inode_out { ino = nodeId, off = offset, len = length };
        var n = Write(buffer[OutHeaderSize..], in body);
        var header = new fuse_out_header { len = (uint)(OutHeaderSize + n), error = (int)FuseNotifyCode.InvalInode, unique = 0 };
        MemoryMarshal.Write(buffer, in header);
        return OutHeaderSize + n;
    }

    /// <summary>FUSE_NOTIFY_INVAL_ENTRY: header, body, the name and its NUL. Returns the total length.</summary>
    public static int WriteNotifyInvalEntry(Span<byte> buffer, ulong parent, ReadOnlySpan<byte> name)
    {
        var body = new fuse_notify_inval_entry_out { parent = parent, namelen = (uint)name.Length };
        var n = Write(buffer[OutHeaderSize..], in body);
        name.CopyTo(buffer[(OutHeaderSize + n)..]);
        buffer[OutHeaderSize + n + name.Length] = 0;
        var total = OutHeaderSize + n + name.Length + 1;
        var header = new fuse_out_header { len = (uint)total, error = (int)FuseNotifyCode.InvalEntry, unique = 0 };
        MemoryMarshal.Write(buffer, in header);
        return total;
    }

    private static (ulong Seconds, uint Nanoseconds) Split(TimeSpan t) =>
        t <= TimeSpan.Zero ? (0, 0) : ((ulong)(t.Ticks / TimeSpan.TicksPerSecond), (uint)(t.Ticks % TimeSpan.TicksPerSecond * 100));
}
