using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Text;
using Appliance.Fs.Api;
using Appliance.Fs.Protocol;
using Appliance.Fs.Session;
using Appliance.Fs.TestFs;
using Appliance.Platform.Native;
using Xunit.Abstractions;

namespace Appliance.Fs.Tests.Protocol;

/// <summary>
/// The dispatcher without a kernel: requests are handed to it as a reader thread would, and its replies are read
/// from a SOCK_SEQPACKET socket standing in for /dev/fuse (one message per write, boundaries kept).
/// </summary>
public sealed class DispatchTests : IDisposable
{
    private readonly ITestOutputHelper _output;
    private readonly MemoryFileSystem _fs = new() { Capacity = 64L << 20 };
    private readonly FuseSession _session;
    private readonly int _ours;
    private readonly int _kernel;
    private readonly List<string> _log = [];
    private readonly byte[] _request = GC.AllocateUninitializedArray<byte>(FuseConstants.BufferSize, pinned: true);
    private readonly byte[] _reply = new byte[FuseConstants.BufferSize];
    private ulong _unique = 100;

    public DispatchTests(ITestOutputHelper output)
    {
        _output = output;
        _session = FuseSession.CreateForTest(_fs, new FuseOptions { Log = line => { lock (_log) { _log.Add(line); } } });
        (_ours, _kernel) = Posix.socketpair(Posix.SOCK_SEQPACKET);
        Posix.fcntl_set_nonblock(_kernel);
    }

    public void Dispose()
    {
        Posix.close(_ours);
        Posix.close(_kernel);
    }

    [Fact]
    public void Init_negotiates_down_to_our_version_and_the_features_we_want()
    {
        var init = new fuse_init_in { major = 7, minor = 45, max_readahead = 1 << 17, flags = uint.MaxValue, flags2 = uint.MaxValue };
        var (error, payload) = Call(FuseOpcode.Init, 0, Bytes(init));
        Assert.Equal(0, error);
        var reply = MemoryMarshal.Read<fuse_init_out>(payload);
        Assert.Equal(7U, reply.major);
        Assert.Equal(45U, reply.minor);
        Assert.Equal(1U << 20, reply.max_write);
        Assert.Equal(256, reply.max_pages);
        var flags = (InitFlags)reply.flags | (InitFlags)((ulong)reply.flags2 << 32);
        Assert.True(flags.HasFlag(InitFlags.AsyncRead | InitFlags.MaxPages | InitFlags.ParallelDirops | InitFlags.DoReaddirplus
            | InitFlags.ReaddirplusAuto | InitFlags.AtomicOTrunc | InitFlags.ExportSupport | InitFlags.InitExt));
        Assert.False(flags.HasFlag(InitFlags.PosixLocks));
        Assert.False(flags.HasFlag(InitFlags.FlockLocks));
        Assert.False(flags.HasFlag(InitFlags.WritebackCache));
        Assert.False(flags.HasFlag(InitFlags.SecurityCtx)); // would add extensions to requests we do not parse

        // Flags we did not get offered are never claimed; an older kernel's minor is kept.
        var (_, older) = Call(FuseOpcode.Init, 0, Bytes(new fuse_init_in { major = 7, minor = 36, flags = (uint)InitFlags.AsyncRead }));
        var olderReply = MemoryMarshal.Read<fuse_init_out>(older);
        Assert.Equal(36U, olderReply.minor);
        Assert.Equal((uint)InitFlags.AsyncRead, olderReply.flags);
        Assert.Equal(0U, olderReply.flags2);

        Assert.Equal(FsErrno.EPROTO, Call(FuseOpcode.Init, 0, Bytes(new fuse_init_in { major = 7, minor = 30 })).Error);
    }

    [Fact]
    public void Entries_attributes_and_errors_are_encoded()
    {
        Assert.Equal(FsErrno.ENOENT, Call(FuseOpcode.Lookup, 1, Name("missing")).Error);
        var (error, payload) = Call(FuseOpcode.MkDir, 1, [.. Bytes(new fuse_mkdir_in { mode = 0x1ED }), .. Name("dir")]);
        Assert.Equal(0, error);
        var entry = MemoryMarshal.Read<fuse_entry_out>(payload);
        Assert.NotEqual(0UL, entry.nodeid);
        Assert.Equal(0x41EDU, entry.attr.mode); // S_IFDIR added by the session
        Assert.Equal(2U, entry.attr.nlink);
        Assert.Equal(1UL, entry.entry_valid);
        var (_, attr) = Call(FuseOpcode.GetAttr, entry.nodeid, Bytes(new fuse_getattr_in()));
        Assert.Equal(entry.nodeid, MemoryMarshal.Read<fuse_attr_out>(attr).attr.ino);
        Assert.Equal(FsErrno.EEXIST, Call(FuseOpcode.MkDir, 1, [.. Bytes(new fuse_mkdir_in { mode = 0x1ED }), .. Name("dir")]).Error);
    }

    [Fact]
    public void Malformed_requests_get_EINVAL_and_unknown_ones_ENOSYS()
    {
        Assert.Equal(FsErrno.EINVAL, Call(FuseOpcode.Lookup, 1, "no-terminator"u8.ToArray()).Error);
        Assert.Equal(FsErrno.EINVAL, Call(FuseOpcode.SetAttr, 1, new byte[10]).Error);
        Assert.Equal(FsErrno.EINVAL, Call(FuseOpcode.Write, 1, Bytes(new fuse_write_in { size = 100 })).Error); // data missing
        Assert.Equal(FsErrno.EINVAL, Call(FuseOpcode.Rename2, 1, [.. Bytes(new fuse_rename2_in { newdir = 1 }), .. Name("only-one")]).Error);
        Assert.Equal(FsErrno.ENOSYS, Call(FuseOpcode.Statx, 1, new byte[32]).Error);
        Assert.Equal(FsErrno.ENOSYS, Call((FuseOpcode)9999, 1, []).Error);
    }

    [Fact]
    public void Forgets_are_never_answered_and_interrupts_of_unknown_requests_ask_for_a_resend()
    {
        var (_, payload) = Call(FuseOpcode.Create, 1, [.. Bytes(new fuse_create_in { mode = 0x81A4, flags = 2 }), .. Name("f")]);
        var node = MemoryMarshal.Read<fuse_entry_out>(payload).nodeid;
        Call(FuseOpcode.Lookup, 1, Name("f"));
        Assert.Equal(2UL, _fs.LookupCount(node));
        Assert.Null(Send(FuseOpcode.Forget, node, Bytes(new fuse_forget_in { nlookup = 1 })));
        Assert.Equal(1UL, _fs.LookupCount(node));
        Assert.Null(Send(FuseOpcode.BatchForget, 0, [.. Bytes(new fuse_batch_forget_in { count = 1 }), .. Bytes(new fuse_forget_one { nodeid = node, nlookup = 1 })]));
        Assert.Equal(0UL, _fs.LookupCount(node));
        Assert.Equal(FsErrno.EAGAIN, Call(FuseOpcode.Interrupt, 0, Bytes(new fuse_interrupt_in { unique = 12345 })).Error);
    }

    [Fact]
    public void An_interrupt_that_comes_as_its_request_finishes_does_nothing()
    {
        // The INTERRUPT's reader finds the request in flight, its backend call ends and disposes it, then the
        // interrupt lands: it must not throw (it ran on a reader thread, whose failure ends the mount).
        var r = new Request(0, [], new fuse_in_header { opcode = (uint)FuseOpcode.SetLkW, unique = 9 });
        r.Dispose();
        r.Interrupt();
        Assert.Equal(FsErrno.EINTR, r.CancelErrno);
    }

    [Fact]
    public void Only_lock_waits_and_dying_callers_are_interrupted()
    {
        Assert.True(FuseSession.IsInterruptible(FuseOpcode.SetLkW));
        Assert.All([FuseOpcode.Write, FuseOpcode.Create, FuseOpcode.Rename, FuseOpcode.Unlink, FuseOpcode.Lookup, FuseOpcode.GetAttr, FuseOpcode.Read],
            op => Assert.False(FuseSession.IsInterruptible(op)));
        Assert.False(FuseSession.CallerIsDying((uint)Environment.ProcessId)); // this test process: alive, no SIGKILL pending
        Assert.True(FuseSession.CallerIsDying(int.MaxValue - 1)); // no such process
    }

    [Fact]
    public void Random_requests_get_exactly_one_well_formed_reply_each()
    {
        var seed = TestSeed.Get(nameof(Random_requests_get_exactly_one_well_formed_reply_each), _output);
        var rng = new Random(seed);
        var count = TestSeed.Soak ? 200_000 : 5_000;
        Call(FuseOpcode.Init, 0, Bytes(new fuse_init_in { major = 7, minor = 45, flags = uint.MaxValue }));
        var opcodes = Enum.GetValues<FuseOpcode>().Where(o => o is not (FuseOpcode.Init or FuseOpcode.Destroy)).ToArray();
        for (var i = 0; i < count; i++)
        {
            var opcode = opcodes[rng.Next(opcodes.Length)];
            var args = RandomArgs(rng);
            var node = rng.Next(4) == 0 ? (ulong)rng.NextInt64() : (ulong)rng.Next(1, 12);
            var reply = Send(opcode, node, args);
            if (opcode is FuseOpcode.Forget or FuseOpcode.BatchForget)
            {
                Assert.Null(reply);
                continue;
            }
            Assert.True(reply is not null, $"seed {seed}, request {i} ({opcode}): no reply");
            var (header, _) = reply.Value;
            Assert.Equal(_unique, header.unique);
            Assert.InRange(header.error, -4095, 0);
            Assert.True(header.error == 0 || header.len == 16, $"seed {seed}, request {i}: error reply with a payload");
            Assert.Null(Receive()); // exactly one
        }
        Assert.Equal(0, _session.BackendFaults);
        Assert.Empty(_log);
    }

    private static byte[] RandomArgs(Random rng)
    {
        // A fixed part of random bytes whose 8-byte fields are mostly small (valid-looking handles, offsets and
        // sizes), sometimes names after it, sometimes cut short.
        var fixedPart = new byte[rng.Next(0, 64)];
        rng.NextBytes(fixedPart);
        for (var at = 0; at + 8 <= fixedPart.Length; at += 8)
        {
            if (rng.Next(5) != 0)
            {
                BitConverter.TryWriteBytes(fixedPart.AsSpan(at), (ulong)rng.Next(0, 70_000));
            }
        }
        var names = Enumerable.Range(0, rng.Next(3)).SelectMany(_ => Name($"n{rng.Next(6)}"));
        return [.. fixedPart, .. names];
    }

    private (int Error, byte[] Payload) Call(FuseOpcode opcode, ulong node, byte[] args)
    {
        var reply = Send(opcode, node, args) ?? throw new Xunit.Sdk.XunitException($"{opcode}: no reply");
        Assert.Equal(_unique, reply.Header.unique);
        return (-reply.Header.error, reply.Payload);
    }

    private (fuse_out_header Header, byte[] Payload)? Send(FuseOpcode opcode, ulong node, byte[] args)
    {
        var buffer = _request;
        var header = new fuse_in_header
        {
            len = (uint)(40 + args.Length),
            opcode = (uint)opcode,
            unique = ++_unique,
            nodeid = node,
        };
        MemoryMarshal.Write(buffer, in header);
        args.CopyTo(buffer, 40);
        Assert.False(_session.DispatchForTest(_ours, buffer, 40 + args.Length)); // the in-memory filesystem answers at once
        return Receive();
    }

    private (fuse_out_header Header, byte[] Payload)? Receive()
    {
        var message = _reply;
        int n;
        try
        {
            n = Posix.read(_kernel, message);
        }
        catch (PlatformBusyException)
        {
            return null; // EAGAIN: nothing was written
        }
        var header = MemoryMarshal.Read<fuse_out_header>(message);
        Assert.Equal((uint)n, header.len);
        return (header, message.AsSpan(16, n - 16).ToArray());
    }

    private static byte[] Bytes<T>(T value)
        where T : unmanaged
    {
        var bytes = new byte[Unsafe.SizeOf<T>()];
        MemoryMarshal.Write(bytes, in value);
        return bytes;
    }

    private static byte[] Name(string name) => [.. Encoding.UTF8.GetBytes(name), 0];
}
