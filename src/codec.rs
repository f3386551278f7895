//! The protobuf codec of `gatehouse.v1`: tonic-prost's, except that a
//! message that does not parse (bad wire format, a string that is not UTF-8)
//! is `INVALID_ARGUMENT` naming the problem, not `INTERNAL` — the caller sent
//! it, nothing inside Gatehouse broke, and a monitoring alert on `INTERNAL`
//! should not fire for every fuzzer on the internet. (Generated clients use
//! it too: a response that does not parse is then `INVALID_ARGUMENT` as well.)

use tonic::codec::{BufferSettings, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::{Code, Status};

/// [`tonic_prost::ProstCodec`] with parse failures as `INVALID_ARGUMENT`.
#[derive(Debug, Clone)]
pub struct Codec<T, U>(tonic_prost::ProstCodec<T, U>);

impl<T, U> Default for Codec<T, U> {
    fn default() -> Self {
        Self(tonic_prost::ProstCodec::default())
    }
}

impl<T, U> tonic::codec::Codec for Codec<T, U>
where
    T: prost::Message + Send + 'static,
    U: prost::Message + Default + Send + 'static,
{
    type Encode = T;
    type Decode = U;
    type Encoder = MessageEncoder<T>;
    type Decoder = MessageDecoder<U>;

    fn encoder(&mut self) -> Self::Encoder {
        MessageEncoder(self.0.encoder())
    }

    fn decoder(&mut self) -> Self::Decoder {
        MessageDecoder(self.0.decoder())
    }
}

/// tonic-prost's encoder, unchanged.
#[derive(Debug)]
pub struct MessageEncoder<T>(tonic_prost::ProstEncoder<T>);

impl<T: prost::Message> Encoder for MessageEncoder<T> {
    type Item = T;
    type Error = Status;

    fn encode(&mut self, item: T, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        self.0.encode(item, dst)
    }

    fn buffer_settings(&self) -> BufferSettings {
        self.0.buffer_settings()
    }
}

/// tonic-prost's decoder, with parse failures as `INVALID_ARGUMENT`.
#[derive(Debug)]
pub struct MessageDecoder<U>(tonic_prost::ProstDecoder<U>);

impl<U: prost::Message + Default> Decoder for MessageDecoder<U> {
    type Item = U;
    type Error = Status;

    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<U>, Status> {
        self.0.decode(src).map_err(|status| {
            if status.code() == Code::Internal {
                Status::invalid_argument(format!("malformed message: {}", status.message()))
            } else {
                status
            }
        })
    }

    fn buffer_settings(&self) -> BufferSettings {
        self.0.buffer_settings()
    }
}
