using Appliance.Fs.Api;
using Appliance.Fs.Protocol;

namespace Appliance.Fs.Session;

/// <summary>
/// One kernel request in flight. It is answered exactly once: by its backend's result, or earlier by its deadline
/// or an INTERRUPT — whichever claims it first (<see cref="TryClaim"/>); the loser's result is dropped.
/// </summary>
internal sealed class Request(int fd, byte[] buffer, in fuse_in_header header)
{
    private readonly CancellationTokenSource _cts = new();
    private int _claimed;
    private int _cancelErrno = FsErrno.ETIMEDOUT;

    public int Fd { get; } = fd;

    public byte[] Buffer { get; } = buffer;

    public ulong Unique { get; } = header.unique;

    public FuseOpcode Opcode { get; } = (FuseOpcode)header.opcode;

    public ulong NodeId { get; } = header.nodeid;

    public FuseContext Context { get; } = new(header.uid, header.gid, header.pid, header.unique);

    public CancellationToken Token => _cts.Token;

    /// <summary>The errno the kernel gets if the request is cancelled before its backend answers.</summary>
    public int CancelErrno => Volatile.Read(ref _cancelErrno);

    /// <summary>The reply payload area (after the out header).</summary>
    public Memory<byte> Payload => Buffer.AsMemory(Replies.OutHeaderSize);

    /// <summary>True for the one caller allowed to answer.</summary>
    public bool TryClaim() => Interlocked.Exchange(ref _claimed, 1) == 0;

    /// <summary>Starts the deadline; when it passes, <paramref name="onCancel"/> runs (once).</summary>
    public CancellationTokenRegistration Arm(TimeSpan timeout, Action<Request> onCancel)
    {
        var registration = _cts.Token.Register(static state =>
        {
            var (request, callback) = ((Request, Action<Request>))state!;
            callback(request);
        }, (this, onCancel));
        _cts.CancelAfter(timeout);
        return registration;
    }

    /// <summary>An INTERRUPT for this request arrived: answer EINTR now.</summary>
    public void Interrupt()
    {
        Volatile.Write(ref _cancelErrno, FsErrno.EINTR);
        try
        {
            _cts.Cancel();
        }
        catch (ObjectDisposedException)
        {
            // Answered and done between the INTERRUPT's lookup and now: nothing left to interrupt.
        }
    }

    public void Dispose() => _cts.Dispose();
}
