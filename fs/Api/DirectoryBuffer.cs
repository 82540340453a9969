using System.Runtime.InteropServices;
using System.Text;
using Appliance.Fs.Protocol;

namespace Appliance.Fs.Api;

/// <summary>
/// The reply of one READDIR / READDIRPLUS, filled by the filesystem entry by entry until <see cref="TryAdd"/>
/// returns false (the kernel's buffer is full; that entry was not sent and must be sent again from the same
/// offset next time). Each entry carries the offset of the entry after it, which the kernel passes back to
/// continue the listing.
/// </summary>
public sealed class DirectoryBuffer
{
    private readonly Memory<byte> _destination;
    private List<ulong>? _counted;

    internal DirectoryBuffer(Memory<byte> destination, bool plus)
    {
        _destination = destination;
        Plus = plus;
    }

    /// <summary>READDIRPLUS: entries carry attributes, and each accepted entry with a node id (other than "."
    /// and "..") counts as one kernel lookup of it.</summary>
    public bool Plus { get; }

    /// <summary>Bytes written so far.</summary>
    public int Length { get; private set; }

    /// <summary>How many entries were accepted.</summary>
    public int Count { get; private set; }

    /// <summary>The node ids that gained a lookup (READDIRPLUS), so a reply the kernel never sees can be undone.</summary>
    internal IReadOnlyList<ulong> Counted => (IReadOnlyList<ulong>?)_counted ?? [];

    /// <summary>
    /// Adds one entry. In READDIRPLUS mode pass <paramref name="entry"/> (with NodeId 0 the kernel only lists the
    /// name, e.g. for "." and ".."); the filesystem must count a lookup for each accepted entry whose NodeId is
    /// not 0 and whose name is not "." or "..". <paramref name="type"/> is the S_IFMT part of the mode.
    /// </summary>
    public bool TryAdd(string name, ulong ino, uint type, long nextOffset, in Entry entry = default)
    {
        var nameLength = Encoding.UTF8.GetByteCount(name);
        var header = Plus ? Marshal.SizeOf<fuse_entry_out>() + Marshal.SizeOf<fuse_dirent>() : Marshal.SizeOf<fuse_dirent>();
        var size = (header + nameLength + 7) & ~7;
        if (Length + size > _destination.Length)
        {
            return false;
        }
        var span = _destination.Span.Slice(Length, size);
        span.Clear();
        var at = 0;
        if (Plus)
        {
            var entryOut = Replies.ToEntryOut(entry);
            MemoryMarshal.Write(span, in entryOut);
            at = Marshal.SizeOf<fuse_entry_out>();
            if (entry.NodeId != 0 && name is not "." and not "..")
            {
                (_counted ??= []).Add(entry.NodeId);
            }
        }
        var dirent = new fuse_dirent { ino = ino, off = (ulong)nextOffset, namelen = (uint)nameLength, type = (type & 0xF000) >> 12 };
        MemoryMarshal.Write(span[at..], in dirent);
        Encoding.UTF8.GetBytes(name, span[(at + Marshal.SizeOf<fuse_dirent>())..]);
        Length += size;
        Count++;
        return true;
    }
}
