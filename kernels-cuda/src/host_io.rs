//! Host buffers the executable copies outputs and state into, viewed as bytes.

use hasten_tensor::host::HostData;

/// The bytes of host data, for a device-to-host copy. Booleans come back from the device as
/// 0 or 1, which are valid `bool`s.
pub fn bytes_mut(data: &mut HostData) -> &mut [u8] {
    fn raw<T>(v: &mut [T]) -> &mut [u8] {
        // SAFETY: any bytes written are valid for the element types used here (f32, i32, u8,
        // and bool, whose device values are 0 or 1).
        unsafe {
            std::slice::from_raw_parts_mut(v.as_mut_ptr() as *mut u8, std::mem::size_of_val(v))
        }
    }
    match data {
        HostData::F32(v) => raw(v),
        HostData::I32(v) => raw(v),
        HostData::U8(v) => raw(v),
        HostData::Bool(v) => raw(v),
    }
}
