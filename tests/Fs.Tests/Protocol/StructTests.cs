using System.Runtime.CompilerServices;
using System.Text;
using Appliance.Fs.Api;
using Appliance.Fs.Protocol;

namespace Appliance.Fs.Tests.Protocol;

public class StructTests
{
    // Sizes from include/uapi/linux/fuse.h (7.45); a wrong one garbles every following field on the wire.
    [Fact]
    public void Wire_structures_have_the_kernel_sizes()
    {
        Assert.Equal(40, Unsafe.SizeOf<fuse_in_header>());
        Assert.Equal(16, Unsafe.SizeOf<fuse_out_header>());
        Assert.Equal(88, Unsafe.SizeOf<fuse_attr>());
        Assert.Equal(128, Unsafe.SizeOf<fuse_entry_out>());
        Assert.Equal(104, Unsafe.SizeOf<fuse_attr_out>());
        Assert.Equal(80, Unsafe.SizeOf<fuse_kstatfs>());
        Assert.Equal(64, Unsafe.SizeOf<fuse_init_in>());
        Assert.Equal(64, Unsafe.SizeOf<fuse_init_out>());
        Assert.Equal(88, Unsafe.SizeOf<fuse_setattr_in>());
        Assert.Equal(16, Unsafe.SizeOf<fuse_getattr_in>());
        Assert.Equal(24, Unsafe.SizeOf<fuse_file_lock>());
        Assert.Equal(48, Unsafe.SizeOf<fuse_lk_in>());
        Assert.Equal(24, Unsafe.SizeOf<fuse_lk_out>());
        Assert.Equal(16, Unsafe.SizeOf<fuse_mknod_in>());
        Assert.Equal(16, Unsafe.SizeOf<fuse_create_in>());
        Assert.Equal(16, Unsafe.SizeOf<fuse_open_out>());
        Assert.Equal(24, Unsafe.SizeOf<fuse_release_in>());
        Assert.Equal(24, Unsafe.SizeOf<fuse_flush_in>());
        Assert.Equal(40, Unsafe.SizeOf<fuse_read_in>());
        Assert.Equal(40, Unsafe.SizeOf<fuse_write_in>());
        Assert.Equal(16, Unsafe.SizeOf<fuse_rename2_in>());
        Assert.Equal(32, Unsafe.SizeOf<fuse_fallocate_in>());
        Assert.Equal(24, Unsafe.SizeOf<fuse_lseek_in>());
        Assert.Equal(56, Unsafe.SizeOf<fuse_copy_file_range_in>());
        Assert.Equal(24, Unsafe.SizeOf<fuse_dirent>());
        Assert.Equal(24, Unsafe.SizeOf<fuse_notify_inval_inode_out>());
        Assert.Equal(16, Unsafe.SizeOf<fuse_notify_inval_entry_out>());
        Assert.Equal(16, Unsafe.SizeOf<fuse_forget_one>());
    }

    [Fact]
    public void Header_parser_refuses_short_and_inconsistent_requests()
    {
        var buffer = new byte[64];
        Assert.Equal(-1, RequestParser.ParseHeader(buffer.AsSpan(0, 39), out _));
        WriteHeader(buffer, len: 64, opcode: FuseOpcode.Lookup);
        Assert.Equal(64, RequestParser.ParseHeader(buffer, out var h));
        Assert.Equal((uint)FuseOpcode.Lookup, h.opcode);
        Assert.Equal(7UL, h.unique);
        // Claims more bytes than were read.
        Assert.Equal(-1, RequestParser.ParseHeader(buffer.AsSpan(0, 50), out _));
        // Claims fewer bytes than a header.
        WriteHeader(buffer, len: 12, opcode: FuseOpcode.Lookup);
        Assert.Equal(-1, RequestParser.ParseHeader(buffer, out _));
    }

    [Fact]
    public void Names_need_their_terminator_and_a_character()
    {
        Assert.Equal(4, RequestParser.ReadName("abc\0def\0"u8, out var name));
        Assert.Equal("abc", name);
        Assert.Equal(-1, RequestParser.ReadName("abc"u8, out _));
        Assert.Equal(-1, RequestParser.ReadName("\0"u8, out _));
        Assert.Equal(-1, RequestParser.ReadStruct<fuse_write_in>(new byte[39], out _));
    }

    [Fact]
    public void Directory_entries_are_aligned_and_refused_when_the_buffer_is_full()
    {
        var buffer = new byte[80];
        var listing = new DirectoryBuffer(buffer, plus: false);
        Assert.True(listing.TryAdd("a", 5, 0x8000, 3));
        Assert.Equal(32, listing.Length); // 24 + 1 rounded up to 8
        Assert.True(listing.TryAdd("0123456789", 6, 0x4000, 4));
        Assert.Equal(32 + 40, listing.Length);
        Assert.False(listing.TryAdd("b", 7, 0x8000, 5)); // 8 bytes left: does not fit
        Assert.Equal(2, listing.Count);
        Assert.Equal(5UL, BitConverter.ToUInt64(buffer, 0));
        Assert.Equal(3UL, BitConverter.ToUInt64(buffer, 8));
        Assert.Equal(1U, BitConverter.ToUInt32(buffer, 16));
        Assert.Equal(8U, BitConverter.ToUInt32(buffer, 20)); // DT_REG
        Assert.Equal("a", Encoding.UTF8.GetString(buffer, 24, 1));
        Assert.Equal(4U, BitConverter.ToUInt32(buffer, 32 + 20)); // DT_DIR
    }

    [Fact]
    public void Readdirplus_counts_lookups_except_dot_entries()
    {
        var listing = new DirectoryBuffer(new byte[4096], plus: true);
        var e = new Entry(9, 1, default, TimeSpan.FromSeconds(1), TimeSpan.FromSeconds(1));
        Assert.True(listing.TryAdd(".", 1, 0x4000, 1, new Entry(1, 1, default, default, default)));
        Assert.True(listing.TryAdd("f", 9, 0x8000, 3, e));
        Assert.Equal([9UL], listing.Counted);
        Assert.Equal(2 * ((128 + 24 + 1 + 7) & ~7), listing.Length);
    }

    [Fact]
    public void Notifications_carry_code_and_name()
    {
        var buffer = new byte[64];
        var n = Replies.WriteNotifyInvalEntry(buffer, 1, "xy"u8);
        Assert.Equal(16 + 16 + 3, n);
        Assert.Equal((uint)n, BitConverter.ToUInt32(buffer, 0));
        Assert.Equal((int)FuseNotifyCode.InvalEntry, BitConverter.ToInt32(buffer, 4));
        Assert.Equal(0UL, BitConverter.ToUInt64(buffer, 8));
        Assert.Equal(2U, BitConverter.ToUInt32(buffer, 24));
        Assert.Equal(0, buffer[16 + 16 + 2]);
    }

    private static void WriteHeader(byte[] buffer, uint len, FuseOpcode opcode)
    {
        var h = new fuse_in_header { len = len, opcode = (uint)opcode, unique = 7, nodeid = 1 };
        System.Runtime.InteropServices.MemoryMarshal.Write(buffer, in h);
    }
}
